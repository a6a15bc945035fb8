import assert from "node:assert/strict";
import { test } from "node:test";
import { perCall, usersCounters } from "./users-metrics.ts";

const metrics = (queries: number, dbSeconds: number, calls: number, handlingSeconds: number, pings: number) => `
# TYPE db_client_operation_duration_seconds histogram
db_client_operation_duration_seconds_bucket{le="0.005",db_system_name="postgresql",db_operation_name="SELECT",db_collection_name="users",error_type=""} ${queries}
db_client_operation_duration_seconds_sum{db_system_name="postgresql",db_operation_name="SELECT",db_collection_name="users",error_type=""} ${dbSeconds}
db_client_operation_duration_seconds_count{db_system_name="postgresql",db_operation_name="SELECT",db_collection_name="users",error_type=""} ${queries}
db_client_operation_duration_seconds_sum{db_system_name="postgresql",db_operation_name="SELECT",db_collection_name="users",error_type="DeadlineExceeded"} 1
db_client_operation_duration_seconds_count{db_system_name="postgresql",db_operation_name="SELECT",db_collection_name="users",error_type="DeadlineExceeded"} 1
db_client_operation_duration_seconds_sum{db_system_name="postgresql",db_operation_name="SELECT",db_collection_name="",error_type=""} ${pings * 0.01}
db_client_operation_duration_seconds_count{db_system_name="postgresql",db_operation_name="SELECT",db_collection_name="",error_type=""} ${pings}
grpc_server_handling_seconds_sum{grpc_type="unary",grpc_service="demo.users.v1.UserService",grpc_method="GetUser"} ${handlingSeconds}
grpc_server_handling_seconds_count{grpc_type="unary",grpc_service="demo.users.v1.UserService",grpc_method="GetUser"} ${calls}
grpc_server_handling_seconds_sum{grpc_type="unary",grpc_service="grpc.health.v1.Health",grpc_method="Check"} 7
grpc_server_handling_seconds_count{grpc_type="unary",grpc_service="grpc.health.v1.Health",grpc_method="Check"} 70
`;

test("users' counters: the store's queries of every outcome and UserService calls, never the readiness probe or health checks", () => {
  assert.deepEqual(usersCounters(metrics(10, 0.5, 10, 0.6, 4)), {
    database: true,
    dbSeconds: 1.5,
    dbQueries: 11,
    handlingSeconds: 0.6,
    handled: 10,
  });
});

test("per call: deltas over the calls users served in between", () => {
  const { dbMs, queries, usersMs } = perCall(
    usersCounters(metrics(100, 1, 100, 1.5, 3)),
    usersCounters(metrics(1100, 3, 1100, 4.5, 9)),
  );
  assert.ok(dbMs !== undefined && Math.abs(dbMs - 2) < 1e-9);
  assert.equal(queries, 1);
  assert.ok(Math.abs(usersMs - 3) < 1e-9);
});

test("a users without database metrics (prom-client's grpc_* only): no database time, its handling time still", () => {
  const grpcOnly = (calls: number, handlingSeconds: number) => `
# HELP grpc_server_handling_seconds Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.
# TYPE grpc_server_handling_seconds histogram
grpc_server_handling_seconds_bucket{le="0.005",grpc_type="unary",grpc_service="demo.users.v1.UserService",grpc_method="GetUser"} ${calls}
grpc_server_handling_seconds_sum{grpc_type="unary",grpc_service="demo.users.v1.UserService",grpc_method="GetUser"} ${handlingSeconds}
grpc_server_handling_seconds_count{grpc_type="unary",grpc_service="demo.users.v1.UserService",grpc_method="GetUser"} ${calls}
`;
  const before = usersCounters(grpcOnly(10, 0.01));
  assert.equal(before.database, false);
  const { dbMs, queries, usersMs } = perCall(before, usersCounters(grpcOnly(110, 0.21)));
  assert.equal(dbMs, undefined);
  assert.equal(queries, undefined);
  assert.ok(Math.abs(usersMs - 2) < 1e-9);
});
