// The ImagePushed subscription of the registry's system topic: pushes to the
// configured repositories land in the purge queue as Event Grid events, delivered
// with the topic's managed identity.
// https://learn.microsoft.com/azure/templates/microsoft.eventgrid/systemtopics/eventsubscriptions
// Event shape (data.target.repository): https://learn.microsoft.com/azure/event-grid/event-schema-container-registry

@description('Name of the existing system topic in this resource group.')
param systemTopicName string

@description('Name of the event subscription.')
param subscriptionName string

@description('Resource ID of the Service Bus queue.')
param queueId string

@description('Repository prefixes; a trailing slash is added when missing.')
param repositoryPrefixes array

@description('Exact repository names.')
param repositoryNames array

// One StringBeginsWith filter (values are OR-ed, at most 25; separate advanced
// filters would be AND-ed). An exact name is used as a prefix too, which may
// also let through a push to a longer name: harmless, the worker then finds the
// repository outside its grant and skips it. No values: every push is delivered.
var normalizedPrefixes = [for p in repositoryPrefixes: endsWith(p, '/') ? p : '${p}/']
var filterValues = concat(normalizedPrefixes, repositoryNames)
var advancedFilters = empty(filterValues) ? [] : [
  {
    operatorType: 'StringBeginsWith'
    key: 'data.target.repository'
    values: filterValues
  }
]

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: systemTopicName
}

resource subscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: systemTopic
  name: subscriptionName
  properties: {
    deliveryWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      destination: {
        endpointType: 'ServiceBusQueue'
        properties: {
          resourceId: queueId
        }
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.ContainerRegistry.ImagePushed'
      ]
      advancedFilters: advancedFilters
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
  }
}

output id string = subscription.id
