// The console's side of the API: the session (a bearer token in sessionStorage, nowhere else), the
// grpc-web clients that send it with the chosen organisation, and errors put into words.
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { BadRequestSchema, ErrorInfoSchema } from "./gen/google/rpc/error_details_pb";
import { AuditService } from "./gen/machinesecrets/v1/audit_service_pb";
import { OrgService } from "./gen/machinesecrets/v1/org_service_pb";
import { ProjectService } from "./gen/machinesecrets/v1/project_service_pb";
import { type GetMeResponse, UserService } from "./gen/machinesecrets/v1/user_service_pb";

export const TOKEN_PATH = "/oauth/v2/token";

// sessionStorage lives as long as the tab and is never sent anywhere by the browser; the token is
// not put in localStorage, a cookie or an address. Sign-out clears all of it.
const TOKEN = "machine-secrets.token";
const WHO = "machine-secrets.who";
const ORG = "machine-secrets.org";
// The hint (the 4 characters after msk_, which the secrets list shows too) of the secret signed in
// with, to warn before it is deleted.
const HINT = "machine-secrets.hint";

export const session = {
  token: (): string | null => sessionStorage.getItem(TOKEN),
  who: (): string => sessionStorage.getItem(WHO) ?? "",
  // Signed in with a client secret (who is then its client id), not a personal access token.
  byClient: (): boolean => sessionStorage.getItem(HINT) !== null,
  hint: (): string => sessionStorage.getItem(HINT) ?? "",
  org: (): string => sessionStorage.getItem(ORG) ?? "",
  setOrg: (orgId: string): void => sessionStorage.setItem(ORG, orgId),
  begin(token: string, who: string, hint?: string): void {
    sessionStorage.clear();
    sessionStorage.setItem(TOKEN, token);
    sessionStorage.setItem(WHO, who);
    if (hint !== undefined) sessionStorage.setItem(HINT, hint);
  },
  end: (): void => sessionStorage.clear(),
};

// Every call carries the session's token and, as ZITADEL's clients do, the organisation it acts in.
const credentials: Interceptor = (next) => (request) => {
  const token = session.token();
  if (token) request.header.set("authorization", `Bearer ${token}`);
  const org = session.org();
  if (org) request.header.set("x-zitadel-orgid", org);
  return next(request);
};

// The console is served by the API it calls: same origin, so no CORS.
const transport = createGrpcWebTransport({ baseUrl: location.origin, interceptors: [credentials] });
export const users = createClient(UserService, transport);
export const orgs = createClient(OrgService, transport);
export const audit = createClient(AuditService, transport);
export const projects = createClient(ProjectService, transport);

// Who is signed in, and what it may do in each organisation, as GetMe says (the service's own
// reading of the credential: the same one that decides each call). Until it has answered, nothing is
// known, and a control is taken as allowed: the service decides, and says why.
let me: GetMeResponse | null = null;
// Permissions a refusal named since: roles can be taken while the console is open.
const refusals = new Map<string, Set<string>>();

export const ROLES = ["IAM_OWNER", "ORG_OWNER", "ORG_USER_MANAGER", "PROJECT_OWNER"];

// The permissions each role gives, as server/domain/permissions.py grants them (tests/test_console.py
// checks they are the same): to tell, before a call, that a user holds more power than the caller.
const PROJECT_PERMISSIONS = ["project.read", "project.write", "project.grant.write"];
const WEB_KEY_PERMISSIONS = ["iam.web_key.read", "iam.web_key.write", "iam.web_key.delete"];
export const ROLE_PERMISSIONS: Record<string, string[]> = {
  IAM_OWNER: ["user.read", "user.write", "org.member.write", "org.create", "policy.write", "audit.read", ...PROJECT_PERMISSIONS, ...WEB_KEY_PERMISSIONS],
  ORG_OWNER: ["user.read", "user.write", "org.member.write", "policy.write", "audit.read", ...PROJECT_PERMISSIONS],
  ORG_USER_MANAGER: ["user.read", "user.write"],
  PROJECT_OWNER: PROJECT_PERMISSIONS,
};

export const permissions = {
  reset: (): void => {
    me = null;
    refusals.clear();
  },
  fromMe: (answer: GetMeResponse): void => {
    me = answer;
  },
  // The signed-in user (its id and user name), once GetMe has answered.
  me: (): GetMeResponse | null => me,
  // What the caller holds in an organisation: its memberships' permissions there, and those it
  // holds everywhere (an IAM_OWNER's). null: not known yet.
  held(orgId: string): Set<string> | null {
    if (me === null) return null;
    const there = me.memberships.find((m) => m.orgId === orgId)?.permissions ?? [];
    return new Set([...me.instancePermissions, ...there]);
  },
  // A refusal for want of a permission (the caller lost it since GetMe answered).
  refused(orgId: string, permission: string): void {
    const set = refusals.get(orgId) ?? new Set<string>();
    set.add(permission);
    refusals.set(orgId, set);
  },
  // Why the caller may not do what `permission` allows here, or "" where it may (or it is not known).
  why(orgId: string, permission: string): string {
    const held = permissions.held(orgId);
    const lacks = refusals.get(orgId)?.has(permission) === true || (held !== null && !held.has(permission));
    if (!lacks) return "";
    return `Your account lacks the permission “${permission}” in this organisation, needed to ${PERMISSIONS[permission] ?? "do this"}.`;
  },
  // Why the caller may not act on a user who holds `roles` here, or "": whoever acts on a user's
  // credentials or state must hold every permission the user's roles give (the service's rule,
  // server/domain/commands/writes.py). Roles the user holds in other organisations are not known
  // here: the service still decides, and its refusal says the same.
  morePower(orgId: string, userName: string, roles: string[]): string {
    const held = permissions.held(orgId);
    if (held === null || roles.length === 0) return "";
    const instance = new Set(me?.instancePermissions ?? []);
    if (roles.includes("IAM_OWNER") && !ROLE_PERMISSIONS.IAM_OWNER.every((p) => instance.has(p))) {
      return `${userName} holds more power than you do: it is an IAM_OWNER, so only another IAM_OWNER may change its credentials or state.`;
    }
    const lacking = [...new Set(roles.flatMap((r) => ROLE_PERMISSIONS[r] ?? []))].filter((p) => !held.has(p)).sort();
    if (lacking.length === 0) return "";
    return (
      `${userName} holds more power than you do: its roles here (${roles.join(", ")}) give ` +
      `${lacking.map((p) => `“${p}”`).join(", ")}, which your account lacks, so only someone who holds them may change its credentials or state.`
    );
  },
};

export class SignInRefused extends Error {}

// Client credentials for an access token at the token endpoint (client_secret_post). Only the
// access token is kept; the secret is not stored.
export async function exchange(clientId: string, clientSecret: string): Promise<string> {
  let answer: Response;
  try {
    answer = await fetch(TOKEN_PATH, {
      method: "POST",
      body: new URLSearchParams({ grant_type: "client_credentials", client_id: clientId, client_secret: clientSecret }),
    });
  } catch {
    throw new SignInRefused("The service could not be reached. Check that it is running, then try again.");
  }
  const body = (await answer.json().catch(() => ({}))) as Record<string, unknown>;
  if (answer.ok && typeof body.access_token === "string") return body.access_token;
  if (body.error === "invalid_client") {
    throw new SignInRefused("The client id or secret is wrong, or the secret has expired or been deleted.");
  }
  if (answer.status === 429) throw new SignInRefused("Too many attempts. Wait a little, then try again.");
  throw new SignInRefused(`The token endpoint refused: ${String(body.error_description ?? body.error ?? answer.status)}.`);
}

// What each permission lets a person do, for PERMISSION_DENIED.
const PERMISSIONS: Record<string, string> = {
  "user.read": "see users and their secrets",
  "user.write": "create and change users and their secrets",
  "org.member.write": "manage the organisation's members",
  "org.create": "create organisations",
  "policy.write": "change the organisation's secret policy",
  "audit.read": "read the organisation's history",
  "project.read": "see the organisation's projects",
  "project.write": "create and change projects, their roles and API applications",
  "project.grant.write": "give users roles of projects",
};

export interface Problem {
  // What happened, in words.
  words: string;
  // The service's own message and its stable reason, for whoever debugs it.
  message: string;
  reason: string;
  // Per-field problems of an INVALID_ARGUMENT.
  fields: { field: string; description: string }[];
  // The session is over: back to sign-in.
  signIn: boolean;
  // The permission a refusal named.
  permission: string;
}

export function problemOf(error: unknown): Problem {
  const failure = ConnectError.from(error);
  const [info] = failure.findDetails(ErrorInfoSchema);
  const [request] = failure.findDetails(BadRequestSchema);
  const reason = info?.reason ?? Code[failure.code] ?? "";
  const metadata = info?.metadata ?? {};
  const fields = (request?.fieldViolations ?? []).map((v) => ({ field: v.field, description: v.description }));
  const problem = (words: string): Problem => ({
    words,
    message: failure.rawMessage,
    reason,
    fields,
    signIn: failure.code === Code.Unauthenticated,
    permission: metadata.permission ?? "",
  });
  if (failure.code === Code.Unknown && failure.cause instanceof TypeError) {
    return problem("The service could not be reached. Check that it is running, then try again.");
  }
  // A refusal of the console's own (no ErrorInfo: the service always sends one), in its words.
  if (info === undefined && failure.code === Code.NotFound) return problem(failure.rawMessage);
  if (failure.code === Code.Unauthenticated) {
    return problem("Your session has ended: the token expired, was revoked, or is not valid. Sign in again.");
  }
  switch (reason) {
    case "PERMISSION_DENIED": {
      const permission = metadata.permission;
      if (permission) {
        const can = PERMISSIONS[permission] ?? "do this";
        return problem(
          `You are not allowed to ${can} in this organisation: your account lacks the permission ` +
            `“${permission}”. An owner of the organisation can grant it with a role.`,
        );
      }
      if (failure.rawMessage.includes("holds permissions the caller does not hold")) {
        return problem(
          "This user holds more power than you do: it has permissions your account does not hold, so only someone who holds them may change it.",
        );
      }
      return problem("You are not allowed to do this: it would need permissions your account does not hold.");
    }
    case "ORGANIZATION_NOT_FOUND":
      return problem("This organisation does not exist, or you may not act in it. Pick another one.");
    case "USER_NOT_FOUND":
      return problem("This user does not exist in this organisation. It may have been removed.");
    case "USER_NOT_MACHINE":
      return problem("Only machine users have client secrets; this is a human user.");
    case "TOKEN_NOT_FOUND":
      return problem("This personal access token no longer exists. It may have been revoked already.");
    case "USER_NOT_ACTIVE":
      return problem("This user is deactivated already.");
    case "USER_NOT_INACTIVE":
      return problem("This user is active already.");
    case "MEMBER_NOT_FOUND":
      return problem("This user is not a member of this organisation.");
    case "MEMBER_ALREADY_EXISTS":
      return problem("This user is a member of this organisation already: remove it first to change its roles.");
    case "LAST_IAM_OWNER":
      return problem("This is the last IAM_OWNER of the service: someone must keep the power to manage it.");
    case "SECRET_NOT_FOUND":
      return problem("This secret no longer exists. It may have been deleted or retired already.");
    case "USER_NAME_TAKEN":
      return problem("This user name is taken. User names are unique in the whole service, whatever their case.");
    case "SECRET_LIMIT_REACHED":
      return problem(
        `This user has as many live secrets as the organisation allows (${metadata.limit ?? "its limit"}). ` +
          "Delete one first, or rotate with no grace period.",
      );
    case "KEY_NOT_FOUND":
      return problem("This key no longer exists. It may have been removed already.");
    case "FEDERATED_CREDENTIAL_NOT_FOUND":
      return problem("This federated credential no longer exists. It may have been removed already.");
    case "TRUSTED_ISSUER_NOT_FOUND":
      return problem("The organisation does not trust this issuer: add it under Trusted issuers first, or it was removed.");
    case "TRUSTED_ISSUER_EXISTS":
      return problem("The organisation trusts this issuer already.");
    case "PROJECT_NOT_FOUND":
      return problem("This project does not exist in this organisation. It may have been removed.");
    case "APP_NOT_FOUND":
      return problem("This application no longer exists. It may have been removed already.");
    case "ROLE_ALREADY_EXISTS":
      return problem("The project has a role with this key already.");
    case "ROLE_NOT_FOUND":
      return problem("The project has no such role. It may have been removed.");
    case "GRANT_ALREADY_EXISTS":
      return problem("This user has a grant of this project already: remove it first to change its roles.");
    case "GRANT_NOT_FOUND":
      return problem("This grant no longer exists. It may have been removed already.");
    case "INVALID_ARGUMENT":
      return problem("Some of what was entered cannot be used:");
    case "CONCURRENT_MODIFICATION":
      return problem("Someone changed this at the same moment. Try again.");
    case "OVERLOADED":
      return problem("The service is busy. Try again in a few seconds.");
    case "TOO_MANY_FAILURES":
      return problem("Too many failed attempts. Wait a little, then try again.");
    case "STORE_UNAVAILABLE":
      return problem("The service cannot reach its database right now. Try again shortly.");
  }
  return problem("The service refused the request.");
}
