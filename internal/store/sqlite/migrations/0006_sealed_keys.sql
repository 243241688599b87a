-- 0006: token signing keys sealed at rest.
--
-- The private key column holds the private JWK sealed by package seal
-- (under a key-encryption key that is not in the database), and a new
-- column holds the public JWK in the clear, for the JWKS. Rows written
-- before this migration hold plaintext private JWKs and no public JWK:
-- the server seals them in place when it starts (the sealing needs the
-- key-encryption key, so it is done in Go, not here).

ALTER TABLE signing_keys RENAME COLUMN private_jwk TO sealed_key;
ALTER TABLE signing_keys ADD COLUMN public_jwk BLOB;
