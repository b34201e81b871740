package daemon

// NudgeAudit asks d's audit log to sign a checkpoint of new entries now
// (audit.Log.Nudge), as the services that append entries do.
func NudgeAudit(d *Daemon) { d.audit.Nudge() }
