// Package packaging builds the deployment package of the function app: one
// zip with the custom-handler binary and the Functions host files at its
// root, the layout a Flex Consumption app runs from.
//
//	handler               the binary (linux/amd64, static, mode 0755)
//	host.json             host configuration (customHandler points at "handler")
//	<Function>/function.json
//	                      one folder per function, copied from functions/<Function>
//
// The binary is compiled with the Go toolchain (CompileHandler) and the zip
// is written by archive/zip (WriteZip), so no zip program is needed. Build
// does both; `make package` runs it through cmd/mkzip. Zips are
// reproducible: entries are sorted and carry a fixed timestamp.
package packaging
