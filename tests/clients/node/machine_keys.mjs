// Key-based clients from npm, unmodified, against the service. Run by tests/test_zitadel_clients.py:
//   node machine_keys.mjs <base URL> <admin PAT> <unique suffix>
// The base URL serves gRPC, the OAuth endpoints and discovery on one port (Envoy), as ZITADEL does.
// - @zitadel/node: a key file from AddMachineKey read by ServiceAccount, its authenticate() (the JWT
//   profile grant after discovery) and createServiceAccountInterceptor on a management client.
// - openid-client 6: discovery, then client credentials with PrivateKeyJwt client authentication,
//   and its generic grant request for the JWT profile grant.
// Prints one JSON object of what it saw; a step that fails is reported, not thrown.
import {
  createAccessTokenInterceptor,
  createManagementClient,
  createServiceAccountInterceptor,
} from "@zitadel/node/dist/api/index.js";
import { ServiceAccount } from "@zitadel/node/dist/credentials/index.js";
import * as oidc from "openid-client";
import { SignJWT, importPKCS8 } from "jose";
import { createPrivateKey, createPublicKey } from "node:crypto";

const [base, pat, suffix] = process.argv.slice(2);
const seen = {};

async function step(name, work) {
  try {
    seen[name] = await work();
  } catch (error) {
    seen[name] = { error: String(error && error.message ? error.message : error), code: error?.code };
  }
}

const admin = createManagementClient(base, createAccessTokenInterceptor(pat));
const userName = `node-keys-${suffix}`;
const { userId } = await admin.addMachineUser({ userName, name: "Node key bot" });
await admin.addOrgMember({ userId, roles: ["ORG_USER_MANAGER"] });
const added = await admin.addMachineKey({ userId, type: 1 }); // KEY_TYPE_JSON
const keyFile = Buffer.from(added.keyDetails).toString("utf8");
seen.keyFileFields = Object.keys(JSON.parse(keyFile)).sort();

// @zitadel/node: ServiceAccount from the key file, as its docs show.
const account = ServiceAccount.fromJsonString(keyFile);
await step("serviceAccountToken", async () => {
  const token = await account.authenticate(base, { apiAccess: true });
  const bot = createManagementClient(base, createAccessTokenInterceptor(token));
  return (await bot.getUserByID({ id: userId })).user.id === userId;
});
await step("interceptor", async () => {
  const bot = createManagementClient(base, createServiceAccountInterceptor(base, account, { apiAccess: true }));
  const first = (await bot.getUserByID({ id: userId })).user.id === userId;
  const second = (await bot.listMachineKeys({ userId })).result.length === 1; // the token reused
  return first && second;
});

// openid-client 6: PrivateKeyJwt client authentication (client credentials), the client id being
// the user name, as for a client secret.
const { key: privatePem } = JSON.parse(keyFile);
const privateKey = await importPKCS8(
  createPrivateKey(privatePem).export({ type: "pkcs8", format: "pem" }),
  "RS256",
);
await step("privateKeyJwt", async () => {
  const config = await oidc.discovery(
    new URL(base),
    userName,
    undefined,
    oidc.PrivateKeyJwt({ key: privateKey, kid: added.keyId }),
    { execute: [oidc.allowInsecureRequests] },
  );
  const tokens = await oidc.clientCredentialsGrant(config, {
    scope: "openid urn:zitadel:iam:org:project:id:zitadel:aud",
  });
  const bot = createManagementClient(base, createAccessTokenInterceptor(tokens.access_token));
  return {
    tokenType: tokens.token_type,
    works: (await bot.getUserByID({ id: userId })).user.id === userId,
  };
});

// openid-client 6: the JWT profile grant through its generic grant request, the assertion signed
// as RFC 7523 §3 asks (iss = sub = the user id, aud = the issuer), with a jti. An uploaded EC key
// signs ES256.
const ec = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
const publicPem = createPublicKey({ key: await crypto.subtle.exportKey("jwk", ec.publicKey), format: "jwk" })
  .export({ type: "spki", format: "pem" });
const uploaded = await admin.addMachineKey({ userId, type: 1, publicKey: Buffer.from(publicPem) });
for (const [name, key, kid, alg] of [
  ["jwtBearerRS256", privateKey, added.keyId, "RS256"],
  ["jwtBearerES256", ec.privateKey, uploaded.keyId, "ES256"],
]) {
  await step(name, async () => {
    const config = await oidc.discovery(new URL(base), userName, undefined, oidc.None(), {
      execute: [oidc.allowInsecureRequests],
    });
    const assertion = await new SignJWT({})
      .setProtectedHeader({ alg, kid })
      .setIssuer(userId)
      .setSubject(userId)
      .setAudience(config.serverMetadata().issuer)
      .setIssuedAt()
      .setExpirationTime("10m")
      .setJti(crypto.randomUUID())
      .sign(key);
    const tokens = await oidc.genericGrantRequest(config, "urn:ietf:params:oauth:grant-type:jwt-bearer", {
      assertion,
      scope: "openid urn:zitadel:iam:org:project:id:zitadel:aud",
    });
    const bot = createManagementClient(base, createAccessTokenInterceptor(tokens.access_token));
    return (await bot.getUserByID({ id: userId })).user.id === userId;
  });
}
console.log(JSON.stringify(seen));
