package acr

import (
	"strings"
	"time"
)

// Media types the purge logic cares about.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeOCIManifest        = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeOCIIndex           = "application/vnd.oci.image.index.v1+json"
	MediaTypeOCIArtifact        = "application/vnd.oci.artifact.manifest.v1+json"
)

// IsIndex reports whether a manifest media type is a multi-platform index.
func IsIndex(mediaType string) bool {
	return mediaType == MediaTypeOCIIndex || mediaType == MediaTypeDockerManifestList
}

// Attributes are the changeable attributes of a tag or manifest. A nil field
// means "not reported" and counts as enabled.
type Attributes struct {
	DeleteEnabled *bool `json:"deleteEnabled,omitempty"`
	WriteEnabled  *bool `json:"writeEnabled,omitempty"`
	ReadEnabled   *bool `json:"readEnabled,omitempty"`
	ListEnabled   *bool `json:"listEnabled,omitempty"`
}

// Locked reports whether ACR refuses to delete the item: deleteEnabled or
// writeEnabled is false.
func (a Attributes) Locked() bool {
	return (a.DeleteEnabled != nil && !*a.DeleteEnabled) || (a.WriteEnabled != nil && !*a.WriteEnabled)
}

// Tag is one entry of GET /acr/v1/{repo}/_tags.
type Tag struct {
	Name           string     `json:"name"`
	Digest         string     `json:"digest"`
	CreatedTime    time.Time  `json:"createdTime"`
	LastUpdateTime time.Time  `json:"lastUpdateTime"`
	Signed         bool       `json:"signed"`
	Attributes     Attributes `json:"changeableAttributes"`
}

// TagList is the body of GET /acr/v1/{repo}/_tags.
type TagList struct {
	Registry  string `json:"registry"`
	ImageName string `json:"imageName"`
	Tags      []Tag  `json:"tags"`
}

// Manifest is one entry of GET /acr/v1/{repo}/_manifests.
type Manifest struct {
	Digest          string     `json:"digest"`
	ImageSize       int64      `json:"imageSize"`
	CreatedTime     time.Time  `json:"createdTime"`
	LastUpdateTime  time.Time  `json:"lastUpdateTime"`
	Architecture    string     `json:"architecture,omitempty"`
	OS              string     `json:"os,omitempty"`
	MediaType       string     `json:"mediaType,omitempty"`
	ConfigMediaType string     `json:"configMediaType,omitempty"`
	Tags            []string   `json:"tags,omitempty"`
	Attributes      Attributes `json:"changeableAttributes"`
}

// ManifestList is the body of GET /acr/v1/{repo}/_manifests.
type ManifestList struct {
	Registry  string     `json:"registry"`
	ImageName string     `json:"imageName"`
	Manifests []Manifest `json:"manifests"`
}

// Catalog is the body of GET /acr/v1/_catalog.
type Catalog struct {
	Repositories []string `json:"repositories"`
}

// Descriptor is an OCI content descriptor.
type Descriptor struct {
	MediaType    string            `json:"mediaType,omitempty"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Platform     *Platform         `json:"platform,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

// Platform of an index entry.
type Platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Variant      string `json:"variant,omitempty"`
}

// ManifestBody is the part of GET /v2/{repo}/manifests/{digest} that purge
// needs: an index's children and an artifact's subject. It is also the shape
// of the referrers response (an index listing referrers in Manifests).
type ManifestBody struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType,omitempty"`
	ArtifactType  string       `json:"artifactType,omitempty"`
	Config        *Descriptor  `json:"config,omitempty"`
	Layers        []Descriptor `json:"layers,omitempty"`
	Manifests     []Descriptor `json:"manifests,omitempty"`
	Subject       *Descriptor  `json:"subject,omitempty"`
}

// Token actions.
const (
	ActionPull          = "pull"
	ActionPush          = "push"
	ActionDelete        = "delete"
	ActionMetadataRead  = "metadata_read"
	ActionMetadataWrite = "metadata_write"
)

// PurgeActions are the actions one purge message asks for on each repository.
var PurgeActions = []string{ActionPull, ActionDelete, ActionMetadataRead, ActionMetadataWrite}

// Scope is one resource scope of an ACR access token, and also one entry of
// the token's "access" claim.
type Scope struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// RepositoryScope is repository:{name}:{actions}.
func RepositoryScope(name string, actions ...string) Scope {
	return Scope{Type: "repository", Name: name, Actions: actions}
}

// CatalogScope is registry:catalog:*.
func CatalogScope() Scope {
	return Scope{Type: "registry", Name: "catalog", Actions: []string{"*"}}
}

// String renders the scope in the wire form type:name:action,action.
func (s Scope) String() string {
	return s.Type + ":" + s.Name + ":" + strings.Join(s.Actions, ",")
}

// Access is the "access" claim of an ACR access token: what was granted.
type Access []Scope

// Allows reports whether the claim grants action on the resource. A "*"
// action grants everything on that resource.
func (a Access) Allows(typ, name, action string) bool {
	for _, s := range a {
		if s.Type != typ || s.Name != name {
			continue
		}
		for _, got := range s.Actions {
			if got == action || got == "*" {
				return true
			}
		}
	}
	return false
}
