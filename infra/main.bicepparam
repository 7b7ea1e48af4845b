// Example parameters. Copy, edit, then:
//   az deployment group create -g <rg> -f infra/main.bicep -p infra/main.bicepparam
using './main.bicep'

param namePrefix = 'acrpurge'

// The registry to purge and its resource group. It must already be in
// "RBAC Registry + ABAC Repository Permissions" mode unless createRegistry is true.
param registryName = 'contosoregistry'
param registryResourceGroup = 'rg-registry'
param createRegistry = false

// What the identity may purge: the ABAC condition and the push filter.
param repositoryPrefixes = [
  'team-a/'
  'ci/'
]
param repositoryNames = []

// Catalog Lister lists every repository name; with it off, list the
// repositories explicitly instead.
param assignCatalogLister = true
param purgeRepositories = []

// One rule per former `acr purge` command; see the operators' guide for the mapping.
param purgePolicy = '{"rules":[{"name":"ci-builds","filters":["ci/.*:^(ci|pr)-"],"ago":"30d","keep":5,"untagged":true},{"name":"team-a-dangling","filters":["team-a/.*:.*"],"untaggedOnly":true,"ago":"7d"}],"protect":["^latest$","^v?[0-9]+[.][0-9]+[.][0-9]+$"]}'

// 02:00 UTC every day (NCRONTAB: second minute hour day month day-of-week).
param schedule = '0 0 2 * * *'

// Deployed as a dry run: flip to false after reading a report.
param dryRun = true

param abacBatchSize = 10
param concurrency = 8
// Delete budget of the whole registry per minute; 0 = 50 % of the SKU's
// WriteOps/min (Basic 50, Standard 250, Premium 1000).
param deletesPerMinute = 0
param deleteBudgetPercent = 50
param repositoryParallelism = 4
param pushDebounce = '10m'
param maximumInstanceCount = 40
