-- Checkpoint fencing: a checkpoint is recorded only if its size exceeds
-- every recorded one (PutCheckpoint decides it in its transaction; this
-- trigger guards against bugs), so that a publisher paused past its lease
-- never records an older root after a newer one. Checkpoints recorded out
-- of order before this migration stay as they are. On PostgreSQL: a
-- trigger function, and PutCheckpoint locks the table first.

CREATE TRIGGER audit_checkpoints_grow BEFORE INSERT ON audit_checkpoints
WHEN NEW.size <= (SELECT max(size) FROM audit_checkpoints)
BEGIN SELECT RAISE(ABORT, 'audit checkpoints only grow'); END;
