-- dmsgd state, version 2: `dmsgctl stats` reads samples by series name over a time range.
CREATE INDEX metric_samples_by_name ON metric_samples (name, at);
