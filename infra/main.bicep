// acrpurge: an Azure Functions custom handler (Flex Consumption) that purges
// Azure Container Registry repositories. Deploy into an existing resource group:
//
//   az deployment group create -g <rg> -f infra/main.bicep -p infra/main.bicepparam
//
// Identity-based connections only: no keys, no connection strings with secrets.
// Written without a Bicep compiler at hand (none could be installed); the Go test
// internal/contract lints this text and keeps the app settings in step with the code.
// Resource shapes follow the ARM template reference,
// https://learn.microsoft.com/azure/templates/ (one URL per resource below).

targetScope = 'resourceGroup'

// ---------------------------------------------------------------- parameters

@description('Short lowercase prefix for resource names (letters and digits).')
@minLength(3)
@maxLength(11)
param namePrefix string

@description('Region of the app resources. The Event Grid system topic always follows the registry region.')
param location string = resourceGroup().location

@description('Name of the container registry to purge.')
param registryName string

@description('Resource group of the registry (it must exist). Defaults to this deployment\'s group.')
param registryResourceGroup string = resourceGroup().name

@description('Create the registry here, in ABAC mode, instead of using an existing one.')
param createRegistry bool = false

@description('SKU when createRegistry is true.')
@allowed([
  'Basic'
  'Standard'
  'Premium'
])
param registrySku string = 'Standard'

@description('Repository prefixes the app may purge, e.g. [\'team-a/\', \'ci/\']. A trailing slash is added when missing. They scope the ABAC condition and the push-event filter.')
param repositoryPrefixes array = []

@description('Exact repository names the app may purge (for repositories at the root of the registry, which no prefix with a slash can cover).')
param repositoryNames array = []

@description('Grant Container Registry Repository Catalog Lister so the Scheduler can list repositories. That role has no ABAC condition: it lists every repository name (not content). Set false and use purgeRepositories instead.')
param assignCatalogLister bool = true

@description('Fixed repository list (PURGE_REPOSITORIES) used instead of the catalog when assignCatalogLister is false.')
param purgeRepositories array = []

@description('Purge policy (PURGE_POLICY): inline JSON, or @file relative to the app root.')
param purgePolicy string

@description('NCRONTAB schedule of the Scheduler, six fields, UTC (PURGE_SCHEDULE).')
param schedule string = '0 0 2 * * *'

@description('PURGE_DRY_RUN: report only, delete nothing. Deployed true; flip it to false once the reports look right.')
param dryRun bool = true

@description('Repositories per message and per token (ABAC_BATCH_SIZE).')
@minValue(1)
@maxValue(50)
param abacBatchSize int = 10

@description('Parallel deletes within one message (PURGE_CONCURRENCY).')
@minValue(1)
@maxValue(64)
param concurrency int = 8

@description('Delete budget of the whole registry per minute (PURGE_DELETES_PER_MINUTE), shared by every instance of the app. ACR throttles per registry, by SKU, every client together. 0 (the default) takes deleteBudgetPercent of the registry SKU\'s documented minimum WriteOps per minute (Basic 100, Standard 500, Premium 2,000): 50, 250 or 1,000 at 50 %. Raise it when the registry is quiet otherwise; a 429 lowers the shared rate anyway.')
@minValue(0)
@maxValue(1000000)
param deletesPerMinute int = 0

@description('With deletesPerMinute 0: the percentage of the registry SKU\'s WriteOps per minute given to deletes; the rest is left to pushes and other writers.')
@minValue(1)
@maxValue(100)
param deleteBudgetPercent int = 50

@description('Repositories of one message purged at once (PURGE_REPOSITORY_PARALLELISM); they share the PURGE_CONCURRENCY deletes in flight.')
@minValue(1)
@maxValue(64)
param repositoryParallelism int = 4

@description('Skip a push-triggered purge of a repository purged within this window, Go duration (PUSH_DEBOUNCE).')
param pushDebounce string = '10m'

@description('Deadline of one message, Go duration, well below the lock renewal limit in host.json (PURGE_MESSAGE_DEADLINE).')
param messageDeadline string = '8m'

@description('Queue maxDeliveryCount; the same value is PURGE_MAX_DELIVERIES so the worker knows the last delivery.')
@minValue(1)
@maxValue(2000)
param maxDeliveryCount int = 5

@description('Service Bus queue name (PURGE_QUEUE).')
param queueName string = 'acr-purge'

@description('Checkpoint table name (CHECKPOINT_TABLE).')
param checkpointTableName string = 'purgecheckpoints'

@description('Duplicate detection window of the queue (ISO 8601). Re-sent batches within it are dropped.')
param duplicateDetectionWindow string = 'PT1H'

@description('Time to live of queued messages (ISO 8601); expired messages are dead-lettered.')
param messageTimeToLive string = 'P7D'

@description('Flex Consumption maximum instance count (the official samples allow 40-1000). Also PURGE_MAX_INSTANCES: an instance that cannot reach the shared budget\'s table keeps to budget ÷ this.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Flex Consumption runtime version of the custom handler stack. Check the regional catalog: Get-AzFunctionAppFlexConsumptionRuntime -Location <region> -Runtime custom.')
param customRuntimeVersion string = '1.0'

@description('Route ImagePushed events of the registry into the queue through an Event Grid system topic. A registry has at most one system topic: set false when it already has one and subscribe it by hand.')
param enablePushTrigger bool = true

@description('Grant Azure Service Bus Data Owner on the queue, so that the platform can read the queue length with the app identity and scale the Worker out (Microsoft\'s Flex Consumption samples assign it, on the namespace). It also lets the identity manage the queue itself; without it the app works but may not scale out on queue length.')
param assignServiceBusDataOwner bool = true

@description('Grant Storage Queue Data Contributor on the storage account. The host needs queues only for blob triggers and similar extensions, which this app does not use.')
param grantHostQueueAccess bool = false

@description('Log Analytics retention in days.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

@description('Tags for every resource.')
param tags object = {}

// ---------------------------------------------------------------- names

var suffix = uniqueString(resourceGroup().id, namePrefix)
var compactPrefix = replace(toLower(namePrefix), '-', '')
var identityName = '${namePrefix}-id-${suffix}'
var storageName = take('${compactPrefix}${suffix}', 24)
var serviceBusName = '${namePrefix}-sb-${suffix}'
var workspaceName = '${namePrefix}-log-${suffix}'
var appInsightsName = '${namePrefix}-ai-${suffix}'
var planName = '${namePrefix}-plan-${suffix}'
var functionAppName = '${namePrefix}-func-${suffix}'
var deploymentContainerName = 'app-package'
var systemTopicName = '${registryName}-events'
var pushSubscriptionName = '${namePrefix}-image-pushed'

// Built-in role definition IDs. ACR ABAC roles: "Azure built-in roles for Containers",
// https://learn.microsoft.com/azure/role-based-access-control/built-in-roles/containers
// Service Bus, Storage and Monitoring roles: https://learn.microsoft.com/azure/role-based-access-control/built-in-roles
var roles = {
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39' // Azure Service Bus Data Sender
  serviceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0' // Azure Service Bus Data Receiver
  serviceBusDataOwner: '090c5cfd-751d-490a-894a-3ce6f1109419' // Azure Service Bus Data Owner
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // Storage Blob Data Owner
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // Storage Table Data Contributor
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88' // Storage Queue Data Contributor
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb' // Monitoring Metrics Publisher
}

// ---------------------------------------------------------------- identity

// https://learn.microsoft.com/azure/templates/microsoft.managedidentity/userassignedidentities
resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: identityName
  location: location
  tags: tags
}

// ---------------------------------------------------------------- storage

// Host storage (AzureWebJobsStorage), the deployment container and the checkpoint table.
// https://learn.microsoft.com/azure/templates/microsoft.storage/storageaccounts
resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource checkpointTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: checkpointTableName
}

// ---------------------------------------------------------------- Service Bus

// Standard tier: duplicate detection is not available on Basic.
// https://learn.microsoft.com/azure/templates/microsoft.servicebus/namespaces
resource serviceBus 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: serviceBusName
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
  }
}

// https://learn.microsoft.com/azure/templates/microsoft.servicebus/namespaces/queues
resource queue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: serviceBus
  name: queueName
  properties: {
    lockDuration: 'PT5M'
    maxDeliveryCount: maxDeliveryCount
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: duplicateDetectionWindow
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: messageTimeToLive
    requiresSession: false
  }
}

// ---------------------------------------------------------------- monitoring

// https://learn.microsoft.com/azure/templates/microsoft.operationalinsights/workspaces
resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: workspaceName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: logRetentionDays
  }
}

// Local (instrumentation key) authentication is off: telemetry is accepted only
// with an Entra token, see APPLICATIONINSIGHTS_AUTHENTICATION_STRING below.
// https://learn.microsoft.com/azure/templates/microsoft.insights/components
resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

// ---------------------------------------------------------------- registry

module registryNew 'modules/registry.bicep' = if (createRegistry) {
  name: 'acrpurge-registry'
  scope: resourceGroup(registryResourceGroup)
  params: {
    name: registryName
    location: location
    sku: registrySku
    tags: tags
  }
}

module registryAccess 'modules/registry-access.bicep' = {
  name: 'acrpurge-registry-access'
  scope: resourceGroup(registryResourceGroup)
  params: {
    registryName: registryName
    principalId: identity.properties.principalId
    assignCatalogLister: assignCatalogLister
    repositoryPrefixes: repositoryPrefixes
    repositoryNames: repositoryNames
    enablePushTrigger: enablePushTrigger
    systemTopicName: systemTopicName
    tags: tags
  }
  dependsOn: [
    registryNew
  ]
}

// ---------------------------------------------------------------- role assignments (app identity)

// Sender on the queue: the Scheduler fans batches out and the Worker enqueues
// continuations and re-fanned portal messages.
resource appQueueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(queue.id, identity.id, roles.serviceBusDataSender)
  scope: queue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataSender)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Receiver on the queue: the Worker's serviceBusTrigger (ServiceBusConnection),
// and the DeadLetters function's trigger on its dead-letter sub-queue
// ($DeadLetterQueue is part of the queue entity, so the same scope covers it).
resource appQueueReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(queue.id, identity.id, roles.serviceBusDataReceiver)
  scope: queue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataReceiver)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Data Owner on the queue: target-based scaling reads the queue's message
// count with the app identity, which needs the Manage right that only Data
// Owner carries (Sender and Receiver do not). Scoped to this queue, not the
// namespace as in Microsoft's samples; see assignServiceBusDataOwner.
resource appQueueOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (assignServiceBusDataOwner) {
  name: guid(queue.id, identity.id, roles.serviceBusDataOwner)
  scope: queue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataOwner)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Blob Data Owner on the account: the host keeps keys, timer schedule status and
// singleton leases in blobs (identity-based AzureWebJobsStorage needs Owner), and
// the platform reads the deployment package from the app-package container.
resource appBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Table Data Contributor on the account: checkpoints (CheckpointStorage) and the
// host's diagnostic events table.
resource appTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Queue Data Contributor only on request: the timer, Service Bus and HTTP triggers
// of this app use no storage queues (blob triggers would).
resource appQueueStorageContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantHostQueueAccess) {
  name: guid(storage.id, identity.id, roles.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Monitoring Metrics Publisher on Application Insights: with local auth disabled
// the host sends telemetry with the identity's token.
// https://learn.microsoft.com/azure/azure-monitor/app/azure-ad-authentication
resource appTelemetryPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, identity.id, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------- push events

// Sender on the queue for the system topic's identity, so Event Grid delivers
// with its managed identity (deliveryWithResourceIdentity), never with a key.
// https://learn.microsoft.com/azure/event-grid/add-identity-roles
resource topicQueueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (enablePushTrigger) {
  name: guid(queue.id, systemTopicName, roles.serviceBusDataSender)
  scope: queue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataSender)
    principalId: registryAccess.outputs.systemTopicPrincipalId
    principalType: 'ServicePrincipal'
  }
}

module pushSubscription 'modules/push-subscription.bicep' = if (enablePushTrigger) {
  name: 'acrpurge-push-subscription'
  scope: resourceGroup(registryResourceGroup)
  params: {
    systemTopicName: systemTopicName
    subscriptionName: pushSubscriptionName
    queueId: queue.id
    repositoryPrefixes: repositoryPrefixes
    repositoryNames: repositoryNames
  }
  dependsOn: [
    topicQueueSender
  ]
}

// ---------------------------------------------------------------- function app

// Flex Consumption plan. https://learn.microsoft.com/azure/templates/microsoft.web/serverfarms
resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

// functionAppConfig replaces FUNCTIONS_WORKER_RUNTIME, WEBSITE_RUN_FROM_PACKAGE and the
// scale settings on Flex Consumption; those app settings must not be set.
// https://learn.microsoft.com/azure/templates/microsoft.web/sites
// https://learn.microsoft.com/azure/azure-functions/functions-app-settings#flex-consumption-plan-deprecations
resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: functionAppName
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: 2048
      }
      runtime: {
        name: 'custom'
        version: customRuntimeVersion
      }
    }
  }
  dependsOn: [
    deploymentContainer
  ]
}

// The delete budget of the whole registry: PURGE_DELETES_PER_MINUTE, or by
// default deleteBudgetPercent of the SKU's documented minimum WriteOps per
// minute. https://learn.microsoft.com/azure/container-registry/container-registry-skus
var skuWriteOpsPerMinute = {
  Basic: 100
  Standard: 500
  Premium: 2000
}
var registrySku = registryAccess.outputs.sku
var skuWriteOps = contains(skuWriteOpsPerMinute, registrySku) ? skuWriteOpsPerMinute[registrySku] : skuWriteOpsPerMinute.Basic
var effectiveDeletesPerMinute = deletesPerMinute > 0 ? deletesPerMinute : max(1, skuWriteOps * deleteBudgetPercent / 100)

var serviceBusHost = split(split(split(serviceBus.properties.serviceBusEndpoint, '//')[1], ':')[0], '/')[0]
var tableEndpoint = storage.properties.primaryEndpoints.table
var tableServiceUri = endsWith(tableEndpoint, '/') ? substring(tableEndpoint, 0, length(tableEndpoint) - 1) : tableEndpoint

// App settings. Names of the app's own settings are config.Names in
// internal/config; the contract test compares this block with them.
// https://learn.microsoft.com/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: functionApp
  name: 'appsettings'
  properties: {
    // Host storage, identity-based.
    AzureWebJobsStorage__accountName: storage.name
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identity.properties.clientId
    // Telemetry with Entra authentication (the connection string locates the
    // resource; with local auth disabled it grants nothing by itself).
    APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD;ClientId=${identity.properties.clientId}'
    // Service Bus trigger connection (host) and the app's own sender.
    ServiceBusConnection__fullyQualifiedNamespace: serviceBusHost
    ServiceBusConnection__credential: 'managedidentity'
    ServiceBusConnection__clientId: identity.properties.clientId
    // The app (config.Names).
    ACR_LOGIN_SERVER: registryAccess.outputs.loginServer
    PURGE_POLICY: purgePolicy
    PURGE_SCHEDULE: schedule
    PURGE_QUEUE: queue.name
    CheckpointStorage__tableServiceUri: tableServiceUri
    CHECKPOINT_TABLE: checkpointTable.name
    AZURE_CLIENT_ID: identity.properties.clientId
    ABAC_BATCH_SIZE: string(abacBatchSize)
    PURGE_CONCURRENCY: string(concurrency)
    PURGE_REPOSITORY_PARALLELISM: string(repositoryParallelism)
    PURGE_DELETES_PER_MINUTE: string(effectiveDeletesPerMinute)
    PURGE_MAX_INSTANCES: string(maximumInstanceCount)
    PURGE_DRY_RUN: dryRun ? 'true' : 'false'
    PURGE_REPOSITORIES: join(purgeRepositories, ',')
    PUSH_DEBOUNCE: pushDebounce
    PURGE_MESSAGE_DEADLINE: messageDeadline
    PURGE_MAX_DELIVERIES: string(maxDeliveryCount)
  }
  dependsOn: [
    appBlobOwner
    appTableContributor
    appQueueReceiver
    appQueueSender
    appQueueOwner
    appTelemetryPublisher
  ]
}

// ---------------------------------------------------------------- outputs

output functionAppName string = functionApp.name
output functionAppHostName string = functionApp.properties.defaultHostName
output registryLoginServer string = registryAccess.outputs.loginServer
output serviceBusNamespace string = serviceBus.name
output queueName string = queue.name
output storageAccountName string = storage.name
output identityClientId string = identity.properties.clientId
output identityPrincipalId string = identity.properties.principalId
output repositoryCondition string = registryAccess.outputs.repositoryCondition
output registrySku string = registrySku
output deletesPerMinute int = effectiveDeletesPerMinute
