// Everything that lives on the registry (and so in the registry's resource group):
// the app identity's ACR role assignments and the Event Grid system topic whose
// ImagePushed events trigger targeted purges.

@description('Name of an existing registry in this resource group (created earlier in the same deployment when main.bicep owns it).')
param registryName string

@description('Principal (object) ID of the app\'s user-assigned identity.')
param principalId string

@description('Grant Container Registry Repository Catalog Lister (registry-wide repository names, no content).')
param assignCatalogLister bool

@description('Repository prefixes; a trailing slash is added when missing.')
param repositoryPrefixes array

@description('Exact repository names.')
param repositoryNames array

@description('Create the Event Grid system topic of the registry.')
param enablePushTrigger bool

@description('Name of the system topic.')
param systemTopicName string

@description('Tags.')
param tags object

// Role definition IDs from "Azure built-in roles for Containers":
// https://learn.microsoft.com/azure/role-based-access-control/built-in-roles/containers
var catalogListerRoleId = 'bfdb9389-c9a5-478a-bb2f-ba9ca092c3c7' // Container Registry Repository Catalog Lister
var repositoryContributorRoleId = '2efddaa5-3f1f-4df3-97df-af3f13818f4c' // Container Registry Repository Contributor

// The ABAC condition: every data action of Repository Contributor is allowed only
// when the requested repository name starts with one of the prefixes (each with its
// trailing slash, so 'team-a/' does not also match 'team-ab/...') or equals one of
// the names. Syntax and the trailing-slash rule:
// https://learn.microsoft.com/azure/container-registry/container-registry-rbac-abac-repository-permissions
// With no prefix and no name the condition compares with '/', which no repository
// is called: the role then grants nothing, never the whole registry.
var repositoryNameAttribute = '@Request[Microsoft.ContainerRegistry/registries/repositories:name]'
var contributorDataActions = [
  'Microsoft.ContainerRegistry/registries/repositories/content/read'
  'Microsoft.ContainerRegistry/registries/repositories/content/write'
  'Microsoft.ContainerRegistry/registries/repositories/content/delete'
  'Microsoft.ContainerRegistry/registries/repositories/metadata/read'
  'Microsoft.ContainerRegistry/registries/repositories/metadata/write'
  'Microsoft.ContainerRegistry/registries/repositories/metadata/delete'
]
var actionTerms = [for action in contributorDataActions: '!(ActionMatches{\'${action}\'})']
var normalizedPrefixes = [for p in repositoryPrefixes: endsWith(replace(p, '\'', ''), '/') ? replace(p, '\'', '') : '${replace(p, '\'', '')}/']
var prefixTerms = [for p in normalizedPrefixes: '${repositoryNameAttribute} StringStartsWithIgnoreCase \'${p}\'']
var nameTerms = [for n in repositoryNames: '${repositoryNameAttribute} StringEqualsIgnoreCase \'${replace(n, '\'', '')}\'']
var repositoryTerms = concat(prefixTerms, nameTerms)
var repositoryClause = empty(repositoryTerms) ? '${repositoryNameAttribute} StringEqualsIgnoreCase \'/\'' : join(repositoryTerms, ' OR ')
var repositoryCondition = '((${join(actionTerms, ' AND ')}) OR (${repositoryClause}))'

// https://learn.microsoft.com/azure/templates/microsoft.containerregistry/registries
resource registry 'Microsoft.ContainerRegistry/registries@2025-11-01' existing = {
  name: registryName
}

// Catalog Lister: the Scheduler lists repositories (GET /acr/v1/_catalog) to fan
// them out. This role takes no ABAC condition, so it reveals every repository name
// (never content); skip it and set purgeRepositories when that is too much.
resource catalogLister 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (assignCatalogLister) {
  name: guid(registry.id, principalId, catalogListerRoleId)
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', catalogListerRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'acrpurge: list repositories for the scheduled purge'
  }
}

// Repository Contributor WITH the ABAC condition: read tags and manifests, unlock
// (metadata write) and delete, only in the configured repositories. Without a
// condition this role would cover the whole registry.
// https://learn.microsoft.com/azure/templates/microsoft.authorization/roleassignments
resource repositoryContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, principalId, repositoryContributorRoleId)
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', repositoryContributorRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'acrpurge: purge the configured repository prefixes'
    condition: repositoryCondition
    conditionVersion: '2.0'
  }
}

// System topic of the registry, with a system-assigned identity used to deliver to
// the Service Bus queue. It must be in the registry's region.
// https://learn.microsoft.com/azure/templates/microsoft.eventgrid/systemtopics
resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = if (enablePushTrigger) {
  name: systemTopicName
  location: registry.location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: registry.id
    topicType: 'Microsoft.ContainerRegistry.Registries'
  }
}

output loginServer string = registry.properties.loginServer
output registryId string = registry.id
// The SKU sets the registry's throttling limits, and so the default delete budget.
output sku string = registry.sku.name
output systemTopicPrincipalId string = enablePushTrigger ? systemTopic.identity.principalId : ''
output repositoryCondition string = repositoryCondition
