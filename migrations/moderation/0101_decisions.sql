-- The moderation service's table (services/moderation/src/store.rs). No unique task_id on
-- purpose: a task is decided once because the decision commits with its inbox mark.
CREATE TABLE decisions (
    decision_id text   PRIMARY KEY CHECK (char_length(decision_id) BETWEEN 1 AND 64),
    task_id     text   NOT NULL CHECK (char_length(task_id) BETWEEN 1 AND 64),
    target_kind text   NOT NULL CHECK (target_kind IN ('AD', 'USER')),
    target_id   text   NOT NULL CHECK (char_length(target_id) BETWEEN 1 AND 64),
    decision    text   NOT NULL CHECK (decision IN ('BAN', 'OK')),
    reason      text   NOT NULL CHECK (char_length(reason) <= 200),
    worker      text   NOT NULL CHECK (char_length(worker) BETWEEN 1 AND 100),
    decided_ms  bigint NOT NULL
);
CREATE INDEX decisions_task ON decisions (task_id, decided_ms, decision_id);
