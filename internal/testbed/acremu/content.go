package acremu

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"

	"github.com/acrpurge/acrpurge/internal/acr"
)

// Media types used for generated content.
const (
	MediaTypeImageConfig   = "application/vnd.oci.image.config.v1+json"
	MediaTypeDockerConfig  = "application/vnd.docker.container.image.v1+json"
	MediaTypeEmptyConfig   = "application/vnd.oci.empty.v1+json"
	MediaTypeImageLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
	MediaTypeDockerLayer   = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeArtifactLayer = "application/octet-stream"
)

// ArtifactTypeNotarySig is the artifact type of Notary Project signatures,
// a typical referrer.
const ArtifactTypeNotarySig = "application/vnd.cncf.notary.signature"

const (
	annotationCreated      = "org.opencontainers.image.created"
	annotationEmulatorSeed = "dev.acrpurge.emulator.seed"
	annotationEmulatorTags = "dev.acrpurge.emulator.tags"
	emptyConfigDigest      = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a" // sha256 of "{}"
)

// body is the generated manifest JSON: an image manifest or an index.
type body struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	ArtifactType  string            `json:"artifactType,omitempty"`
	Config        *acr.Descriptor   `json:"config,omitempty"`
	Layers        []acr.Descriptor  `json:"layers,omitempty"`
	Manifests     []acr.Descriptor  `json:"manifests,omitempty"`
	Subject       *acr.Descriptor   `json:"subject,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// generate builds the manifest that Put stores for a. lookup finds existing
// manifests of the repository (children and subject descriptors use them).
// The result has digest, body, media types, platform, size, subject and
// children set; times, attributes and tags are left to the caller.
func generate(a Artifact, lookup func(string) *manifest) *manifest {
	mediaType := a.MediaType
	if mediaType == "" {
		if len(a.Children) > 0 {
			mediaType = acr.MediaTypeOCIIndex
		} else {
			mediaType = acr.MediaTypeOCIManifest
		}
	}
	docker := mediaType == acr.MediaTypeDockerManifest || mediaType == acr.MediaTypeDockerManifestList
	index := acr.IsIndex(mediaType)

	// Inputs that make otherwise identical content distinct.
	ann := map[string]string{}
	if a.Seed != "" {
		ann[annotationEmulatorSeed] = a.Seed
	}
	if len(a.Tags) > 0 {
		ann[annotationEmulatorTags] = strings.Join(a.Tags, ",")
	}
	if !a.Created.IsZero() {
		ann[annotationCreated] = a.Created.UTC().Format(time.RFC3339Nano)
	}

	m := &manifest{mediaType: mediaType, artifactType: a.ArtifactType, subject: a.Subject}
	b := body{SchemaVersion: 2, MediaType: mediaType, ArtifactType: a.ArtifactType}
	if docker {
		b.ArtifactType = "" // Docker schema 2 has no artifactType
	}
	var blobSize int64
	switch {
	case index:
		m.children = append([]string(nil), a.Children...)
		b.Manifests = make([]acr.Descriptor, 0, len(a.Children))
		for _, c := range a.Children {
			d := acr.Descriptor{MediaType: acr.MediaTypeOCIManifest, Digest: c}
			if docker {
				d.MediaType = acr.MediaTypeDockerManifest
			}
			if cm := lookup(c); cm != nil {
				d.MediaType, d.Size = cm.mediaType, int64(len(cm.body))
				if cm.arch != "" || cm.os != "" {
					d.Platform = &acr.Platform{Architecture: cm.arch, OS: cm.os}
				}
			}
			b.Manifests = append(b.Manifests, d)
		}
		m.arch, m.os = a.Architecture, a.OS
	default:
		image := a.ArtifactType == ""
		m.arch, m.os = a.Architecture, a.OS
		if image {
			if m.arch == "" {
				m.arch = "amd64"
			}
			if m.os == "" {
				m.os = "linux"
			}
		}
		cfgType := a.ConfigMediaType
		var cfg acr.Descriptor
		switch {
		case cfgType == "" && !image:
			cfg = acr.Descriptor{MediaType: MediaTypeEmptyConfig, Digest: emptyConfigDigest, Size: 2}
		default:
			if cfgType == "" {
				cfgType = MediaTypeImageConfig
				if docker {
					cfgType = MediaTypeDockerConfig
				}
			}
			cfgJSON, _ := json.Marshal(map[string]any{
				"architecture": m.arch, "os": m.os, "config": map[string]any{"Labels": ann},
			})
			cfg = acr.Descriptor{MediaType: cfgType, Digest: sha256Digest(cfgJSON), Size: int64(len(cfgJSON))}
		}
		m.configMediaType = cfg.MediaType
		b.Config = &cfg

		layerType := MediaTypeImageLayer
		if docker {
			layerType = MediaTypeDockerLayer
		} else if !image {
			layerType = MediaTypeArtifactLayer
		}
		seed := sha256.Sum256([]byte(strings.Join([]string{
			"layer", a.Seed, strings.Join(a.Tags, ","), a.Created.UTC().Format(time.RFC3339Nano),
			a.ArtifactType, a.Subject, m.arch, m.os,
		}, "\x00")))
		size := a.Size
		if size <= 0 {
			size = 1<<20 + int64(binary.BigEndian.Uint32(seed[:4])%(63<<20))
		}
		b.Layers = []acr.Descriptor{{MediaType: layerType, Digest: "sha256:" + hex.EncodeToString(seed[:]), Size: size}}
		blobSize = cfg.Size + size
	}
	if a.Subject != "" {
		sd := acr.Descriptor{MediaType: acr.MediaTypeOCIManifest, Digest: a.Subject}
		if sm := lookup(a.Subject); sm != nil {
			sd.MediaType, sd.Size = sm.mediaType, int64(len(sm.body))
		}
		b.Subject = &sd
	}
	if len(ann) > 0 {
		// Docker schema 2 defines no annotations; registries keep unknown
		// fields, and they keep distinct inputs at distinct digests.
		b.Annotations = ann
	}
	raw, _ := json.Marshal(b) // plain structs and strings: cannot fail
	m.body = raw
	m.digest = sha256Digest(raw)
	if a.Size > 0 {
		m.size = a.Size
	} else {
		m.size = int64(len(raw)) + blobSize
	}
	return m
}

// sha256Digest is "sha256:" + the hex sha256 of b.
func sha256Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}
