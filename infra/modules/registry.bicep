// A new container registry in "RBAC Registry + ABAC Repository Permissions" mode
// (roleAssignmentMode AbacRepositoryPermissions), deployed only when main.bicep's
// createRegistry is true. For an existing registry that mode is a prerequisite:
// az acr update -n <registry> --role-assignment-mode rbac-abac
// https://learn.microsoft.com/azure/container-registry/container-registry-rbac-abac-repository-permissions
// https://learn.microsoft.com/azure/templates/microsoft.containerregistry/registries
// (roleAssignmentMode is in the stable API from 2025-11-01.)

@description('Registry name (5-50 letters and digits).')
param name string

@description('Registry region.')
param location string

@description('Registry SKU.')
@allowed([
  'Basic'
  'Standard'
  'Premium'
])
param sku string

@description('Tags.')
param tags object

resource registry 'Microsoft.ContainerRegistry/registries@2025-11-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: sku
  }
  properties: {
    adminUserEnabled: false
    roleAssignmentMode: 'AbacRepositoryPermissions'
  }
}

output id string = registry.id
output loginServer string = registry.properties.loginServer
