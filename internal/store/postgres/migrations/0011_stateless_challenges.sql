-- Stateless renewal challenges: the challenge is MAC'd by a key every
-- replica shares (one row, stored by the first replica that needs it), and
-- its single use is a row inserted in the renewal's own transaction, so a
-- renewal writes once instead of three times (create, consume, record).

CREATE TABLE challenge_keys (
	id  INTEGER PRIMARY KEY CHECK (id = 1),
	key BYTEA NOT NULL CHECK (length(key) >= 32)
);

CREATE TABLE used_challenges (
	id         TEXT PRIMARY KEY,
	expires_at BIGINT NOT NULL
);

CREATE INDEX used_challenges_expiry ON used_challenges (expires_at);
