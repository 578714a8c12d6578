-- The payment service's tables (services/payment/src/model.rs).

-- One row per order that asked for payment: whether its money must go back.
CREATE TABLE order_payments (
    order_id         text    PRIMARY KEY CHECK (length(order_id) BETWEEN 1 AND 64),
    refund_requested boolean NOT NULL,
    version          bigint  NOT NULL CHECK (version > 0)
);

-- One row per charge idempotency key.
CREATE TABLE payments (
    key              text    PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 128),
    seq              bigint  GENERATED ALWAYS AS IDENTITY UNIQUE,
    order_id         text    NOT NULL REFERENCES order_payments (order_id),
    amount_minor     bigint  NOT NULL CHECK (amount_minor > 0),
    currency         text    NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status           text    NOT NULL CHECK (status IN ('PENDING', 'CAPTURED', 'DECLINED',
                                 'REFUND_PENDING', 'REFUNDED', 'CANCELLED')),
    charge_id        text,
    refund_requested boolean NOT NULL,
    reason           text    NOT NULL,
    version          bigint  NOT NULL CHECK (version > 0)
);

CREATE INDEX payments_by_order ON payments (order_id, seq);
