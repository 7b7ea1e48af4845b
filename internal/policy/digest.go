package policy

import "crypto/sha256"

// dkey is a compact, fixed-size map key for a digest: the 32 bytes of a
// canonical "sha256:<64 lowercase hex>" digest, or the SHA-256 of any other
// digest string (marked so the two spaces cannot collide in practice).
type dkey [32]byte

func keyOf(digest string) dkey {
	var k dkey
	if len(digest) == 7+64 && digest[:7] == "sha256:" {
		ok := true
		for i := 0; i < 32 && ok; i++ {
			hi, ok1 := unhex(digest[7+2*i])
			lo, ok2 := unhex(digest[8+2*i])
			ok = ok1 && ok2
			k[i] = hi<<4 | lo
		}
		if ok {
			return k
		}
	}
	return sha256.Sum256([]byte("\x00non-canonical\x00" + digest))
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
