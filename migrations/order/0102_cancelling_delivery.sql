-- A status for a delivery whose deadline passed with its fate unknown (the saga asked the
-- courier to cancel and waits for its verdict): services/order/src/domain.rs.
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check CHECK (status IN ('CREATED',
    'PAYMENT_PENDING', 'PAID', 'SHIPPING', 'SHIPPED', 'DELIVERED', 'PAYMENT_FAILED',
    'DELIVERY_FAILED', 'REFUNDING', 'CANCELLED', 'CANCELLING_DELIVERY'));
