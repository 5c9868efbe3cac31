"""synthetic_pose: the project's embedded, procedurally generated pose dataset."""
