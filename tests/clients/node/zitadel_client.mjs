// ZITADEL's own Node client (@zitadel/client, connect-es), unmodified: management v1 and user v2
// over native gRPC (its server transport) and over grpc-web (its client transport), against the
// service. Run by tests/test_zitadel_clients.py:
//   node zitadel_client.mjs <gRPC base URL> <grpc-web base URL> <admin PAT> <unique suffix>
// Prints one JSON object of what it saw.
import { createClientTransport } from "@zitadel/client/web";
import { createServerTransport } from "@zitadel/client/node";
import { createManagementServiceClient } from "@zitadel/client/v1";
import { createUserServiceClient } from "@zitadel/client/v2";

const [grpcUrl, webUrl, pat, suffix] = process.argv.slice(2);
const seen = {};
const transports = {
  grpc: createServerTransport(pat, { baseUrl: grpcUrl, httpVersion: "2" }),
  "grpc-web": createClientTransport(pat, { baseUrl: webUrl }),
};
for (const [name, transport] of Object.entries(transports)) {
  const management = createManagementServiceClient(transport);
  const users = createUserServiceClient(transport);
  const added = await management.addMachineUser({ userName: `node-${name}-${suffix}`, name: "Node bot" });
  const secret = await management.generateMachineSecret({ userId: added.userId });
  const v2 = await users.getUserByID({ userId: added.userId });
  const again = await users.addSecret({ userId: added.userId });
  let missing;
  try {
    await users.addSecret({ userId: "1" });
  } catch (error) {
    missing = error.code; // connect-es's Code enum: 5 is NotFound
  }
  seen[name] = {
    clientId: secret.clientId,
    secretLength: secret.clientSecret.length,
    sequence: Number(secret.details.sequence),
    resourceOwner: secret.details.resourceOwner,
    hasSecret: v2.user.type.case === "machine" && v2.user.type.value.hasSecret,
    username: v2.user.username,
    v2SecretLength: again.clientSecret.length,
    missing,
  };
}
console.log(JSON.stringify(seen));
