-- The demo contract: u-1..u-3, with fixed names, emails and creation times; new users from u-4 on.
INSERT INTO users (id, name, email, created_at) VALUES
  (1, 'Ada Lovelace', 'ada@example.com', '2024-01-01T09:00:00Z'),
  (2, 'Grace Hopper', 'grace@example.com', '2024-01-02T09:00:00Z'),
  (3, 'Alan Turing', 'alan@example.com', '2024-01-03T09:00:00Z');

SELECT setval(pg_get_serial_sequence('users', 'id'), 3);
