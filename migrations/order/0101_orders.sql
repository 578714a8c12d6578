-- The order service's tables (services/order/src/store.rs).

CREATE TABLE orders (
    order_id        uuid   PRIMARY KEY,
    customer_id     text   NOT NULL CHECK (length(customer_id) BETWEEN 1 AND 64),
    item            text   NOT NULL CHECK (length(item) BETWEEN 1 AND 200),
    amount_minor    bigint NOT NULL CHECK (amount_minor BETWEEN 1 AND 1000000000),
    currency        text   NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status          text   NOT NULL CHECK (status IN ('CREATED', 'PAYMENT_PENDING', 'PAID',
                        'SHIPPING', 'SHIPPED', 'DELIVERED', 'PAYMENT_FAILED', 'DELIVERY_FAILED',
                        'REFUNDING', 'CANCELLED')),
    -- Every status the order has had, oldest first; the last is `status`.
    history         text[] NOT NULL CHECK (array_length(history, 1) >= 1
                        AND history[array_length(history, 1)] = status),
    -- When the current status was entered (ms since the epoch), for step deadlines.
    status_since_ms bigint NOT NULL,
    reason          text   NOT NULL,
    version         bigint NOT NULL CHECK (version > 0)
);

-- A create request's idempotency key → the order it made.
CREATE TABLE order_requests (
    request_key text PRIMARY KEY CHECK (length(request_key) BETWEEN 1 AND 128),
    order_id    uuid NOT NULL UNIQUE REFERENCES orders (order_id)
);
