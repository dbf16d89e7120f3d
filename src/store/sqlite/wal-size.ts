/**
 * The bytes a SQLite write-ahead log keeps after a checkpoint (`journal_size_limit`), for every
 * SQLite file snapfork writes (the metadata, the chunk index): about SQLite's auto-checkpoint
 * size (1,000 pages). Without a limit a checkpoint leaves the log at its largest size, so one
 * burst of writes (a big push's manifest or index rows) keeps its high-water mark on disk.
 */
export const WAL_SIZE_LIMIT = 4 * 1024 * 1024;
