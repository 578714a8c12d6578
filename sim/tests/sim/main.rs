mod kafka_model;
