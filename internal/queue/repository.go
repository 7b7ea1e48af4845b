package queue

import "github.com/acrpurge/acrpurge/internal/acr"

// MaxRepositoryNameLength is the longest repository name accepted.
const MaxRepositoryNameLength = acr.MaxRepositoryLength

// ValidateRepositoryName checks name against the OCI distribution grammar
// (acr.ValidateRepository, the one rule of the module): path components of
// lowercase alphanumerics separated by ".", "_", "__" or one or more "-",
// joined by "/", at most MaxRepositoryNameLength bytes. The returned error
// (nil when valid) says what is wrong; the name itself is not part of the
// message so that callers can quote it safely.
func ValidateRepositoryName(name string) error { return acr.ValidateRepository(name) }

func isAlnum(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') }
