-- The delivery service's shipments (services/delivery/src/store.rs), one per order.
CREATE TABLE shipments (
    order_id         text    PRIMARY KEY CHECK (length(order_id) BETWEEN 1 AND 64),
    address          text    NOT NULL CHECK (length(address) BETWEEN 1 AND 512),
    stage            text    NOT NULL CHECK (stage IN ('REQUESTED', 'ACCEPTED', 'PICKED_UP',
                                 'IN_TRANSIT', 'DELIVERED', 'FAILED', 'CANCELLED')),
    courier_id       text,
    cancel_requested boolean NOT NULL,
    version          bigint  NOT NULL CHECK (version > 0)
);
