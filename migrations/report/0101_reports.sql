-- The report service's table (services/report/src/store.rs).
CREATE TABLE reports (
    report_id       text   PRIMARY KEY CHECK (char_length(report_id) BETWEEN 1 AND 64),
    reporter_id     text   NOT NULL CHECK (char_length(reporter_id) BETWEEN 1 AND 64),
    target_kind     text   NOT NULL CHECK (target_kind IN ('AD', 'USER')),
    target_id       text   NOT NULL CHECK (char_length(target_id) BETWEEN 1 AND 64),
    reason          text   NOT NULL CHECK (reason IN ('spam', 'scam', 'prohibited', 'offensive', 'other')),
    comment         text   NOT NULL CHECK (char_length(comment) <= 1000),
    status          text   NOT NULL,
    decision        text   NOT NULL,
    decision_reason text   NOT NULL CHECK (char_length(decision_reason) <= 200),
    created_ms      bigint NOT NULL,
    decided_ms      bigint NOT NULL,
    CHECK ((status = 'PROCESSING' AND decision = '')
        OR (status = 'DECIDED' AND decision IN ('BAN', 'OK'))),
    -- One report per reporter and target: a second one is the first one.
    UNIQUE (reporter_id, target_kind, target_id)
);
-- The hourly limit counts a reporter's recent reports.
CREATE INDEX reports_reporter_created ON reports (reporter_id, created_ms DESC, report_id DESC);
