"""Training data: RecordIO face sets (recordio), image folders (folders), identity splits and
held-out verification pairs (splits), the LFW mask-tuning set (lfw) and prepared face packs
(prepare writes them, pack reads them)."""
