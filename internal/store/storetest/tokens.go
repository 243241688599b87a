package storetest

import "testing"

func testSigningKeys(t *testing.T, open OpenFunc)   {}
func testUseOnce(t *testing.T, open OpenFunc)       {}
func testRevokedTokens(t *testing.T, open OpenFunc) {}
func testEvents(t *testing.T, open OpenFunc)        {}
