// Package contract holds the tests that keep the places naming the app's
// settings and layout in step: the settings the code reads (config.Names),
// the README's configuration table, local.settings.sample.json, the %NAME%
// references in functions/*/function.json, the app settings written by the
// Bicep templates in infra/, host.json and the deployment package.
//
// It also lints the Bicep text (balanced delimiters, every parameter used,
// module parameters, no keys or connection strings with secrets, defaults equal
// to the code's defaults), since no Bicep compiler is available to the build.
// The package has no code outside its tests.
package contract
