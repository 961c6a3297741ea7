// The machine-secrets console: sign in, pick an organisation, list and create machine users, and
// manage their client secrets, personal access tokens, roles and state, read their history and the
// organisation's secret policy. Pages are chosen by the address's fragment (#/, #/users/ID,
// #/users/ID/tokens, #/policy...), which holds ids only: no secret or token is ever put in an address.
import { durationFromMs, type Duration, type Timestamp, timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { audit, exchange, orgs, permissions, type Problem, problemOf, projects, ROLES, SignInRefused, session, TOKEN_PATH, users } from "./api";
import {
  announce,
  closeAllDialogs,
  copyable,
  field,
  h,
  limitedField,
  modal,
  overLimit,
  problemBox,
  problemText,
  showProblem,
  time,
} from "./dom";
import { LIMITS } from "./limits";
import type { Event as HistoryEvent } from "./gen/machinesecrets/v1/audit_service_pb";
import type { Organization, SecretPolicy } from "./gen/machinesecrets/v1/org_service_pb";
import type { Project } from "./gen/machinesecrets/v1/project_service_pb";
import {
  type FederatedCredential,
  type GetMeResponse,
  KeyState,
  type MachineKey,
  type Secret,
  SecretState,
  type User,
  UserState,
  UserType,
} from "./gen/machinesecrets/v1/user_service_pb";

const main = document.getElementById("main") as HTMLElement;
const bar = document.getElementById("bar") as HTMLElement;
const PAGE_SIZES = [10, 20, 50];
// Calls a page of a search may take (each reads at most 1,000 users on the server).
const SEARCH_STRETCHES = 5;
const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;

// Each render gets a number; an answer that arrives after the person moved on is dropped.
let rendering = 0;
// The users list's search, page size and the page tokens that led to the page shown (the first is "").
// A page of 20 is about 4,000 px tall on a phone, where each row is a card: 10 there.
let listing = { text: "", tokens: [""], size: matchMedia("(max-width: 640px)").matches ? 10 : 20 };
// The session the bar was drawn for, and the names of the organisations it may act in.
let barFor: string | null = null;
const orgNames = new Map<string, string>();
// A sign-in is under way: a refusal now is the answer to it (focus goes to the problem), not a
// session that ended by itself (focus goes to the sign-in form).
let signingIn = false;

const orgName = (): string => orgNames.get(session.org()) ?? "this organisation";

function show(...nodes: (Node | false)[]): void {
  // A new page: no user's power is known on it yet.
  targetWhy = "";
  main.replaceChildren(...nodes.filter((n): n is Node => n !== false));
  applyGates();
  // Keyboard and screen-reader users start at the new page's heading.
  main.querySelector<HTMLElement>("h1")?.focus();
}

// Learns from a refusal what the caller may not do here, and says so on every control it concerns.
function learn(problem: Problem): void {
  if (problem.reason === "PERMISSION_DENIED" && problem.permission) {
    permissions.refused(session.org(), problem.permission);
    applyGates();
  }
}

// Runs a call; on failure shows the problem in `where` (or returns to sign-in) and gives undefined.
async function attempt<T>(call: () => Promise<T>, where: HTMLElement): Promise<T | undefined> {
  try {
    return await call();
  } catch (error) {
    const problem = problemOf(error);
    if (problem.signIn) signOut(problem.words, true);
    else {
      learn(problem);
      showProblem(where, problemBox(problem));
    }
    return undefined;
  }
}

// A dialog's action: its button is disabled while the call runs, a refusal is shown in `problems`,
// and on success the dialog closes before `then` has the answer.
function act<T>(
  dialog: HTMLDialogElement,
  button: HTMLButtonElement,
  problems: HTMLElement,
  call: () => Promise<T>,
  then: (answer: T) => void | Promise<void>,
): void {
  button.disabled = true;
  void (async () => {
    const answer = await attempt(call, problems);
    button.disabled = false;
    if (answer === undefined) return;
    dialog.close();
    await then(answer);
  })();
}

// ---- What the caller may do -------------------------------------------------------------------

// A control that needs a permission: where the caller is known to lack it, it stays focusable but
// does nothing, and says why beside it (and on hover). `onUser`: it acts on the user of the page,
// whose credentials or state only a caller who holds the user's power may change.
function gated<E extends HTMLElement>(control: E, permission: string, onUser = false): E {
  control.dataset.permission = permission;
  if (onUser) control.dataset.onUser = "true";
  return control;
}

// Why the user of the page may not be acted on by the caller (it holds more power), or "".
let targetWhy = "";

let whyIds = 0;
function applyGates(): void {
  for (const control of document.querySelectorAll<HTMLElement>("[data-permission]")) {
    const lacks = permissions.why(session.org(), control.dataset.permission ?? "");
    explain(control, lacks || (control.dataset.onUser ? targetWhy : ""));
  }
}

// Says why a control does nothing (or, with no reason, lets it work again). The words go under
// its group of buttons, not between them.
function explain(control: HTMLElement, why: string): void {
  const shown = control.dataset.why ? document.getElementById(control.dataset.why) : null;
  if (!why) {
    control.removeAttribute("aria-disabled");
    control.removeAttribute("title");
    control.removeAttribute("aria-describedby");
    shown?.remove();
    return;
  }
  control.setAttribute("aria-disabled", "true");
  control.title = why;
  const group = control.parentElement?.classList.contains("buttons") ? control.parentElement : control;
  // Two buttons of one group refused for one reason share its words.
  const same = group.nextElementSibling?.classList.contains("why") && group.nextElementSibling.textContent === why;
  const note = shown ?? (same ? (group.nextElementSibling as HTMLElement) : h("p", { class: "why", id: `why-${++whyIds}` }));
  note.textContent = why;
  if (!shown && !same) group.after(note);
  control.dataset.why = note.id;
  control.setAttribute("aria-describedby", note.id);
}

// A control the caller may not use does nothing, whatever the way it is pressed.
document.addEventListener(
  "click",
  (event) => {
    const target = event.target instanceof Element ? event.target.closest("[aria-disabled='true']") : null;
    if (target) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  },
  true,
);

// ---- Routes -----------------------------------------------------------------------------------

async function route(): Promise<void> {
  const mine = ++rendering;
  if (!session.token()) {
    signInPage();
    return;
  }
  if (barFor !== session.token() && !(await drawBar())) return;
  if (mine !== rendering) return;
  const user = /^#\/users\/(\d{1,64})(?:\/(tokens|keys|federated|roles|history))?$/.exec(location.hash);
  const project = /^#\/projects\/(\d{1,64})$/.exec(location.hash);
  if (user) await userPage(user[1], (user[2] ?? "secrets") as Tab, mine);
  else if (project) await projectPage(project[1], mine);
  else if (location.hash === "#/projects") await projectsPage(mine);
  else if (location.hash === "#/issuers") await issuersPage(mine);
  else if (location.hash === "#/policy") await policyPage(mine);
  else await usersPage(mine);
}

// Ends the session: every dialog closes with it, and the sign-in page takes focus. A session that
// ended by itself (`keepPlace`) keeps the address, so that signing in again returns there.
function signOut(notice: string, ended = false): void {
  closeAllDialogs();
  session.end();
  permissions.reset();
  barFor = null;
  listing = { text: "", tokens: [""], size: listing.size };
  announce("");
  if (!ended) history.replaceState(null, "", location.pathname);
  signInPage(notice, ended);
}

// ---- Sign-in -------------------------------------------------------------------------------

function signInPage(notice = "", isProblem = false): void {
  rendering++;
  closeAllDialogs();
  bar.hidden = true;
  bar.replaceChildren();
  const pat = h("input", { type: "password", autocomplete: "off", required: true });
  const clientId = h("input", { autocomplete: "off", spellcheck: "false", required: true });
  const clientSecret = h("input", { type: "password", autocomplete: "off", required: true });
  const patFields = h("div", { class: "fields" }, field("Personal access token", pat));
  const clientFields = h(
    "div",
    { class: "fields", hidden: true },
    field("Client id", clientId),
    field("Client secret", clientSecret),
  );
  const choose = (withPat: boolean) => () => {
    patFields.hidden = !withPat;
    clientFields.hidden = withPat;
    for (const input of [pat, clientId, clientSecret]) input.disabled = input.closest("[hidden]") !== null;
  };
  const problems = h("div", {});
  const submit = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form",
    { class: "card sign-in" },
    h(
      "fieldset",
      { class: "choice" },
      h("legend", {}, "Sign in with"),
      h("label", {}, h("input", { type: "radio", name: "method", value: "pat", checked: true, onchange: choose(true) }), "A personal access token"),
      h("label", {}, h("input", { type: "radio", name: "method", value: "client", onchange: choose(false) }), "A machine user's client id and secret"),
    ),
    patFields,
    clientFields,
    problems,
    submit,
    h("p", { class: "muted" }, "The token is kept in this browser tab only, and forgotten when you sign out or close the tab."),
  );
  choose(true)();
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit.disabled = true;
    // One problem at a time: the one this attempt gives.
    main.querySelector(".sign-in-page > .problem, .sign-in-page > .notice")?.remove();
    void (async () => {
      try {
        if (!pat.disabled) session.begin(pat.value.trim(), "");
        else {
          const secret = clientSecret.value;
          const token = await exchange(clientId.value.trim(), secret);
          session.begin(token, clientId.value.trim(), secret.startsWith("msk_") ? secret.slice(4, 8) : "");
        }
      } catch (error) {
        const words = error instanceof SignInRefused ? error.message : String(error);
        signingIn = false;
        showProblem(problems, problemText(words));
        submit.disabled = false;
        return;
      }
      // Back to the page asked for (a link, or where the session ended), else the list.
      if (!location.hash) history.replaceState(null, "", "#/");
      signingIn = true;
      await route().finally(() => {
        signingIn = false;
      });
      if (!session.token()) submit.disabled = false;
    })();
  });
  const box = notice ? (isProblem ? problemText(notice) : h("p", { class: "notice", role: "status" }, notice)) : null;
  show(
    h(
      "div",
      { class: "sign-in-page" },
      h("p", { class: "brand-large" }, "machine-secrets"),
      h("h1", { tabindex: -1 }, "Sign in to the console"),
      box ?? false,
      form,
    ),
  );
  if (box && isProblem && signingIn) box.focus();
  else pat.focus();
}

// ---- The bar: organisation, who is signed in, sign-out -----------------------------------------

async function allOrganizations(): Promise<Organization[]> {
  const found: Organization[] = [];
  let pageToken = "";
  do {
    const page = await orgs.listOrganizations({ pageSize: 100, pageToken });
    found.push(...page.organizations);
    pageToken = page.nextPageToken;
  } while (pageToken && found.length < 1000);
  return found;
}

async function drawBar(): Promise<boolean> {
  let found: Organization[];
  let me: GetMeResponse;
  try {
    [found, me] = await Promise.all([allOrganizations(), users.getMe({})]);
  } catch (error) {
    const problem = problemOf(error);
    if (problem.signIn) signOut("That token is not valid, or it has expired or been revoked. Sign in again.", true);
    else show(h("h1", { tabindex: -1 }, "The console could not start"), problemBox(problem));
    return false;
  }
  if (!found.some((o) => o.orgId === session.org())) session.setOrg(found[0]?.orgId ?? "");
  orgNames.clear();
  permissions.reset();
  permissions.fromMe(me);
  for (const org of found) orgNames.set(org.orgId, org.name);
  // The organisation changes only when the person says so (Switch), not as the arrow keys pass
  // over the choices.
  const select = h("select", {});
  for (const org of found) {
    const option = h("option", { value: org.orgId }, org.name);
    option.selected = org.orgId === session.org();
    select.append(option);
  }
  const switcher = h(
    "form",
    {
      class: "org",
      onsubmit: (event: Event) => {
        event.preventDefault();
        if (select.value === session.org()) return;
        session.setOrg(select.value);
        listing = { text: "", tokens: [""], size: listing.size };
        announce(`Now acting in ${orgName()}.`);
        if (["#/", "#/policy", "#/projects", "#/issuers"].includes(location.hash)) void route();
        else location.hash = "#/";
      },
    },
    field("Organisation", select),
    h("button", { type: "submit", class: "secondary" }, "Switch"),
  );
  // Whose credential it is, whatever the credential: GetMe's answer.
  const who = h(
    "span",
    { class: "who" },
    "Signed in as ",
    h("strong", {}, me.user?.userName ?? "?"),
    session.byClient() ? " (client secret)" : " (personal access token)",
  );
  bar.replaceChildren(
    h("a", { class: "brand", href: "#/" }, "machine-secrets", h("span", {}, " console")),
    switcher,
    h(
      "nav",
      { "aria-label": "Console", class: "links" },
      h("a", { href: "#/" }, "Machine users"),
      h("a", { href: "#/projects" }, "Projects"),
      h("a", { href: "#/issuers" }, "Trusted issuers"),
      h("a", { href: "#/policy" }, "Secret policy"),
    ),
    who,
    h("button", { type: "button", class: "secondary", onclick: () => signOut("You have signed out.") }, "Sign out"),
  );
  bar.hidden = false;
  barFor = session.token();
  return true;
}

// The organisation a dialog acts in, said in the dialog.
function inOrg(): HTMLElement {
  return h("p", { class: "in-org" }, "In organisation ", h("strong", {}, orgName()));
}

// ---- Machine users -------------------------------------------------------------------------

function cell(label: string, ...content: (Node | string)[]): HTMLTableCellElement {
  return h("td", { "data-label": label }, ...content);
}

function badge(text: string, kind: string): HTMLElement {
  return h("span", { class: `badge ${kind}` }, text);
}

function userState(state: UserState): HTMLElement {
  return state === UserState.INACTIVE ? badge("Deactivated", "off") : badge("Active", "on");
}

function table(caption: string, columns: string[], rows: HTMLTableRowElement[]): HTMLTableElement {
  return h(
    "table",
    {},
    h("caption", { class: "visually-hidden" }, caption),
    h("thead", {}, h("tr", {}, ...columns.map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, ...rows),
  );
}

async function usersPage(mine: number): Promise<void> {
  const search = h("input", { type: "search", autocomplete: "off", spellcheck: "false", value: listing.text });
  const results = h("div", { class: "results" }, h("p", { class: "muted" }, "Loading…"));
  show(
    h(
      "div",
      { class: "heading" },
      h("h1", { tabindex: -1 }, "Machine users"),
      h("div", { class: "buttons" }, gated(h("button", { type: "button", onclick: () => newUserDialog() }, "New machine user"), "user.write")),
    ),
    h("p", { class: "lead" }, `Service accounts of ${orgName()}. Each signs in with its user name as client id and one of its client secrets.`),
    h(
      "form",
      {
        role: "search",
        class: "search",
        onsubmit: (event: Event) => {
          event.preventDefault();
          listing = { text: search.value.trim(), tokens: [""], size: listing.size };
          void loadUsers(results, mine);
        },
      },
      field("Search by user name or name", search),
      h("button", { type: "submit", class: "secondary" }, "Search"),
    ),
    results,
  );
  await loadUsers(results, mine);
}

// Where a page is. A search's pages may be short (each reads a stretch of users), so it counts the
// page's matches rather than numbering them.
function pageStatus(page: number, first: number, last: number, count: number, more: boolean): string {
  const follow = more ? ", more follow" : "";
  if (!listing.text) return `Page ${page + 1}: ${first} to ${last}${follow}`;
  if (count === 0) return `Page ${page + 1}: no match in this stretch of users${follow}`;
  return `Page ${page + 1}: ${count} ${count === 1 ? "match" : "matches"}${follow}`;
}

// One page of users. The pager comes before the table, so it is a few Tabs from the search, and
// focus stays on the control that moved the page.
async function loadUsers(results: HTMLElement, mine: number, keep = ""): Promise<void> {
  const page = listing.tokens.length - 1;
  // A search reads a stretch of users a call, so a page of it may come back short, or empty, with
  // more to read: the console reads on (a few stretches at most) until the page is full.
  const answer = await attempt(async () => {
    const gathered = { users: [] as User[], nextPageToken: listing.tokens[page] };
    for (let stretch = 0; stretch < SEARCH_STRETCHES; stretch++) {
      const part = await users.listUsers({
        contains: listing.text,
        type: UserType.MACHINE,
        pageSize: listing.size - gathered.users.length,
        pageToken: gathered.nextPageToken,
      });
      gathered.users.push(...part.users);
      gathered.nextPageToken = part.nextPageToken;
      if (!part.nextPageToken || gathered.users.length >= listing.size) break;
    }
    return gathered;
  }, results);
  if (answer === undefined || mine !== rendering) return;
  if (answer.users.length === 0 && !answer.nextPageToken) {
    results.replaceChildren(
      h(
        "p",
        { class: "empty", role: "status" },
        listing.text
          ? `No machine user's user name or name holds “${listing.text}”.`
          : "No machine users yet. Create one to give a service its own credentials.",
      ),
    );
    return;
  }
  const rows = answer.users.map((user) =>
    h(
      "tr",
      {},
      cell("User name", h("a", { href: `#/users/${user.id}` }, user.userName)),
      cell("Name", user.name || "—"),
      cell("State", userState(user.state)),
      cell("Client secret", user.hasSecret ? "Yes" : "None"),
      cell("Created", time(user.details?.creationDate)),
    ),
  );
  const move = (tokens: string[], focus: string) => () => {
    listing = { ...listing, tokens };
    void loadUsers(results, mine, focus);
  };
  const size = h("select", {});
  for (const n of PAGE_SIZES) {
    const option = h("option", { value: String(n) }, String(n));
    option.selected = n === listing.size;
    size.append(option);
  }
  size.addEventListener("change", () => {
    listing = { ...listing, tokens: [""], size: Number(size.value) };
    void loadUsers(results, mine, "size");
  });
  const first = (page * listing.size) + 1;
  const last = first + answer.users.length - 1;
  const previous = h(
    "button",
    { type: "button", class: "secondary", disabled: page === 0, onclick: move(listing.tokens.slice(0, -1), "Previous") },
    "Previous",
  );
  const next = h(
    "button",
    { type: "button", class: "secondary", disabled: !answer.nextPageToken, onclick: move([...listing.tokens, answer.nextPageToken], "Next") },
    "Next",
  );
  results.replaceChildren(
    h(
      "nav",
      { class: "pager", "aria-label": "Pages of machine users" },
      h("div", { class: "field size" }, h("label", { class: "label", for: "page-size" }, "Per page"), size),
      // The API gives no total: the page's place, and whether more follow.
      h("span", { class: "page", role: "status" }, pageStatus(page, first, last, answer.users.length, answer.nextPageToken !== "")),
      previous,
      next,
    ),
    rows.length
      ? table("Machine users", ["User name", "Name", "State", "Client secret", "Created"], rows)
      : h("p", { class: "muted" }, "No match among the users read so far: Next reads on."),
  );
  size.id = "page-size";
  if (keep === "size") size.focus();
  else if (keep) {
    const wanted = keep === "Next" ? next : previous;
    (wanted.disabled ? (keep === "Next" ? previous : next) : wanted).focus();
  }
}

function newUserDialog(): void {
  const userName = limitedField(
    "User name",
    h("input", { required: true, autocomplete: "off", spellcheck: "false" }),
    LIMITS.userName,
    "The client id. Unique in the whole service, no spaces.",
  );
  const name = limitedField("Name", h("input", { required: true, autocomplete: "off" }), LIMITS.name);
  const description = limitedField(
    "Description (optional)",
    h("textarea", { rows: 2, autocomplete: "off" }),
    LIMITS.userDescription,
  );
  const problems = h("div", {});
  const submit = h("button", { type: "submit" }, "Create");
  const value = (f: { control: HTMLElement }): string => (f.control as HTMLInputElement).value.trim();
  const dialog = modal(
    "New machine user",
    inOrg(),
    h(
      "form",
      {
        onsubmit: (event: Event) => {
          event.preventDefault();
          if (overLimit(problems, [userName, name, description])) return;
          act(
            dialog,
            submit,
            problems,
            () => users.addMachineUser({ userName: value(userName), name: value(name), description: value(description) }),
            (made) => {
              announce("Machine user created.");
              location.hash = `#/users/${made.userId}`;
            },
          );
        },
      },
      userName.element,
      name.element,
      description.element,
      problems,
      h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", onclick: () => dialog.close() }, "Cancel"), submit),
    ),
  );
}

// ---- One machine user -------------------------------------------------------------------------

type Tab = "secrets" | "tokens" | "keys" | "federated" | "roles" | "history";
const TABS: [Tab, string][] = [
  ["secrets", "Client secrets"],
  ["tokens", "Personal access tokens"],
  ["keys", "Keys"],
  ["federated", "Federated credentials"],
  ["roles", "Roles"],
  ["history", "History"],
];

// Whether the user is the one signed in, whatever the credential (GetMe names it).
const isMe = (user: User): boolean => user.id !== "" && user.id === permissions.me()?.user?.id;

async function userPage(userId: string, tab: Tab, mine: number): Promise<void> {
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  show(h("p", { class: "crumbs" }, h("a", { href: "#/" }, "← Machine users")), h("h1", { tabindex: -1 }, "Machine user"), body);
  const found = await attempt(() => users.getUserByID({ userId }), body);
  if (found?.user === undefined || mine !== rendering) return;
  const user = found.user;
  // Its roles here: a user who holds more power than the caller is said to, before any refusal.
  // Unreadable: nothing is said, and the service decides.
  const roles = await orgs.listOrgMembers({ userId }).then((m) => m.members[0]?.roles ?? [], () => []);
  if (mine !== rendering) return;
  targetWhy = isMe(user) ? "" : permissions.morePower(session.org(), user.userName, roles);
  const heading = main.querySelector("h1") as HTMLElement;
  heading.replaceChildren(user.userName, " ", userState(user.state));
  document.title = `${user.userName} · machine-secrets console`;
  const about = h(
    "dl",
    { class: "about" },
    h("dt", {}, "Client id"),
    h("dd", {}, h("code", {}, user.userName)),
    h("dt", {}, "Name"),
    h("dd", {}, user.name || "—"),
    h("dt", {}, "Description"),
    h("dd", {}, user.description || "—"),
    h("dt", {}, "User id"),
    h("dd", {}, h("code", {}, user.id)),
    h("dt", {}, "Organisation"),
    h("dd", {}, orgName()),
    h("dt", {}, "Created"),
    h("dd", {}, time(user.details?.creationDate)),
  );
  const active = user.state !== UserState.INACTIVE;
  const actions = h(
    "div",
    { class: "buttons user-actions" },
    gated(
      h("button", { type: "button", class: "secondary", onclick: () => stateDialog(user, active ? "deactivate" : "reactivate") }, active ? "Deactivate" : "Reactivate"),
      "user.write",
      true,
    ),
    gated(h("button", { type: "button", class: "danger", onclick: () => stateDialog(user, "remove") }, "Remove user"), "user.write", true),
  );
  if (user.type !== UserType.MACHINE) {
    body.replaceChildren(about, h("p", { class: "empty" }, "This is a human user: only machine users have client secrets."));
    return;
  }
  const nav = h(
    "nav",
    { class: "tabs", "aria-label": "About this user" },
    ...TABS.map(([name, label]) =>
      h("a", { href: `#/users/${user.id}${name === "secrets" ? "" : `/${name}`}`, "aria-current": name === tab ? "page" : undefined }, label),
    ),
  );
  const content = h("div", { class: "tab" });
  body.replaceChildren(about, actions, nav, content);
  applyGates();
  if (tab === "secrets") await secretsTab(user, content, mine);
  else if (tab === "tokens") await tokensTab(user, content, mine);
  else if (tab === "keys") await keysTab(user, content, mine);
  else if (tab === "federated") await federatedTab(user, content, mine);
  else if (tab === "roles") await rolesTab(user, content, mine);
  else await historyTab(user, content, mine, [""]);
}

// Deactivate, reactivate or remove, after a confirmation that says what stops working.
function stateDialog(user: User, what: "deactivate" | "reactivate" | "remove"): void {
  const problems = h("div", {});
  const texts = {
    deactivate: {
      title: `Deactivate ${user.userName}?`,
      says: `Its client secrets, its personal access tokens and every access token they earned are refused at once: services that sign in as ${user.userName} stop working. Nothing is deleted; reactivate it to let them in again.`,
      button: "Deactivate",
    },
    reactivate: {
      title: `Reactivate ${user.userName}?`,
      says: "Its live client secrets and personal access tokens are accepted again.",
      button: "Reactivate",
    },
    remove: {
      title: `Remove ${user.userName}?`,
      says: `Every client secret, personal access token, access token and membership of ${user.userName} ends at once, and its user name becomes free for another user. Its history stays. This cannot be undone.`,
      button: "Remove user",
    },
  }[what];
  const confirm = h("button", { type: "button", class: what === "reactivate" ? "" : "danger" }, texts.button);
  const cancel = h("button", { type: "button", class: "secondary", autofocus: true }, "Cancel");
  const dialog = modal(
    texts.title,
    inOrg(),
    h("p", {}, texts.says),
    isMe(user) && what !== "reactivate" && h("p", { class: "warning" }, h("strong", {}, "You are signed in as this user: "), "your session ends with it."),
    problems,
    h("div", { class: "actions" }, cancel, confirm),
  );
  cancel.addEventListener("click", () => dialog.close());
  confirm.addEventListener("click", () => {
    act<unknown>(
      dialog,
      confirm,
      problems,
      () =>
        what === "deactivate"
          ? users.deactivateUser({ userId: user.id })
          : what === "reactivate"
            ? users.reactivateUser({ userId: user.id })
            : users.removeUser({ userId: user.id }),
      async () => {
        announce(`${user.userName} ${what === "remove" ? "removed" : `${what}d`}.`);
        if (what === "remove") location.hash = "#/";
        else await route();
      },
    );
  });
}

// ---- Client secrets ---------------------------------------------------------------------------

function secretLabel(secret: Secret): string {
  return secret.hint ? `msk_${secret.hint}…` : "(issued before the msk_ format)";
}

// A time left, in hours under a day, else in whole days (a day's grace, read a moment later, is
// still "1 day").
function inWords(ms: number): string {
  const hours = Math.max(1, Math.ceil(ms / HOUR_MS));
  if (hours < 24) return `${hours} hour${hours === 1 ? "" : "s"}`;
  const days = Math.round(ms / DAY_MS);
  return `${days} day${days === 1 ? "" : "s"}`;
}

async function secretsTab(user: User, content: HTMLElement, mine: number): Promise<void> {
  const secrets = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const count = h("p", { class: "count-of", role: "status" });
  const newSecret = gated(h("button", { type: "button", onclick: () => secretDialog(user, false) }, "New secret"), "user.write", true);
  content.replaceChildren(
    h(
      "section",
      { "aria-labelledby": "secrets-title" },
      h(
        "div",
        { class: "heading" },
        h("h2", { id: "secrets-title", tabindex: -1 }, "Client secrets"),
        h(
          "div",
          { class: "buttons" },
          newSecret,
          gated(h("button", { type: "button", class: "secondary", onclick: () => secretDialog(user, true) }, "Rotate"), "user.write", true),
        ),
      ),
      count,
      h(
        "p",
        { class: "lead" },
        `A client exchanges the client id and a secret for an access token at ${TOKEN_PATH}. ` +
          "Secrets are stored only as hashes: each is shown once, when it is made. Rotate to replace them without downtime.",
      ),
      secrets,
    ),
  );
  applyGates();
  const [listed, policy] = await Promise.all([
    attempt(() => users.listSecrets({ userId: user.id }), secrets),
    orgs.getSecretPolicy({}).then((p) => p.policy, () => undefined),
  ]);
  if (listed === undefined || mine !== rendering) return;
  const live = listed.secrets.filter((s) => s.state === SecretState.ACTIVE);
  // The live-secret limit, against the organisation's policy.
  // Unreadable (a caller without user.read has no list either) or unset: the service's default.
  const limit = policy?.maxSecretsPerUser ?? LIMITS.defaultMaxSecrets;
  count.textContent = `${live.length} of ${limit} live secrets`;
  if (live.length >= limit) {
    newSecret.removeAttribute("data-permission");
    explain(newSecret, `At the organisation's limit of ${limit} live secrets: delete one, or rotate, to make another.`);
  }
  if (listed.secrets.length === 0) {
    secrets.replaceChildren(h("p", { class: "empty" }, "No secrets. Create one to let this user sign in with client credentials."));
    return;
  }
  const newest = live.at(-1);
  const rotating = live.length > 1 && live.some((s) => s !== newest && s.expirationDate !== undefined);
  secrets.replaceChildren(
    table(
      `Client secrets of ${user.userName}`,
      ["Secret", "Description", "Created", "Expires", "Last used", "State", "Actions"],
      listed.secrets.map((secret) => secretRow(user, secret, secret === newest && rotating, rotating && secret !== newest)),
    ),
  );
}

// A secret's state in words: new after a rotation, retiring (an older one in its grace period),
// expiring soon, never expiring, or expired.
function secretState(secret: Secret, isNew: boolean, older: boolean): HTMLElement {
  if (secret.state === SecretState.EXPIRED) return h("span", { class: "states" }, badge("Expired", "off"));
  const badges: HTMLElement[] = [badge("Active", "on")];
  if (isNew) badges.push(badge("New", "new"));
  if (secret.expirationDate) {
    const left = timestampDate(secret.expirationDate).getTime() - Date.now();
    if (older && left <= 30 * DAY_MS) badges.push(badge(`Retiring in ${inWords(left)}`, "soon"));
    else if (left <= 14 * DAY_MS) badges.push(badge(`Expires in ${inWords(left)}`, "soon"));
  } else badges.push(badge("Never expires", "never"));
  return h("span", { class: "states" }, ...badges);
}

function secretRow(user: User, secret: Secret, isNew: boolean, older: boolean): HTMLTableRowElement {
  return h(
    "tr",
    { class: isNew ? "new" : "" },
    cell("Secret", h("code", {}, secretLabel(secret))),
    cell("Description", secret.description || "—"),
    cell("Created", time(secret.creationDate)),
    cell("Expires", time(secret.expirationDate, "Never")),
    cell("Last used", time(secret.lastUsed, "Never")),
    cell("State", secretState(secret, isNew, older)),
    cell(
      "Actions",
      gated(
        h(
          "button",
          { type: "button", class: "danger", "aria-label": `Delete secret ${secretLabel(secret)}`, onclick: () => deleteDialog(user, secret) },
          "Delete",
        ),
        "user.write",
        true,
      ),
    ),
  );
}

// The expiry a person picked: none, some days from now, or the end of a day they chose.
function expiryField(none = "No expiry (or the organisation's default)"): { element: HTMLElement; value: () => Timestamp | undefined } {
  const choice = h(
    "select",
    {},
    h("option", { value: "" }, none),
    h("option", { value: "30" }, "In 30 days"),
    h("option", { value: "90" }, "In 90 days"),
    h("option", { value: "365" }, "In 1 year"),
    h("option", { value: "date" }, "On a date…"),
  );
  const date = h("input", { type: "date" });
  const dateLabel = field("Expires at the end of", date);
  dateLabel.hidden = true;
  choice.addEventListener("change", () => {
    dateLabel.hidden = choice.value !== "date";
    date.required = !dateLabel.hidden;
  });
  const value = () => {
    if (choice.value === "") return undefined;
    if (choice.value !== "date") return timestampFromDate(new Date(Date.now() + Number(choice.value) * DAY_MS));
    const [year, month, day] = date.value.split("-").map(Number);
    return timestampFromDate(new Date(year, month - 1, day, 23, 59, 59));
  };
  return { element: h("div", {}, field("Expires", choice), dateLabel), value };
}

function secretDialog(user: User, rotate: boolean): void {
  const description = limitedField(
    "Description (optional)",
    h("input", { autocomplete: "off", placeholder: "e.g. where it is deployed" }),
    LIMITS.secretDescription,
  );
  const expiry = expiryField();
  const grace = h(
    "select",
    {},
    h("option", { value: String(HOUR_MS) }, "1 hour"),
    h("option", { value: String(DAY_MS), selected: true }, "1 day"),
    h("option", { value: String(7 * DAY_MS) }, "7 days"),
    h("option", { value: "0" }, "None: they stop working now"),
  );
  const problems = h("div", {});
  const submit = h("button", { type: "submit" }, rotate ? "Rotate" : "Create secret");
  const dialog = modal(
    rotate ? "Rotate the client secrets" : "New client secret",
    inOrg(),
    rotate &&
      h(
        "p",
        {},
        "Rotation makes a new secret and lets the others keep working for a grace period, so running clients can move to the new one without downtime.",
      ),
    h(
      "form",
      {
        onsubmit: (event: Event) => {
          event.preventDefault();
          if (overLimit(problems, [description])) return;
          const fields = {
            userId: user.id,
            description: (description.control as HTMLInputElement).value.trim(),
            expirationDate: expiry.value(),
          };
          type Made = { clientId: string; clientSecret: string; expirationDate?: Timestamp };
          act<Made>(
            dialog,
            submit,
            problems,
            () =>
              rotate
                ? users.rotateSecret({ ...fields, gracePeriod: durationFromMs(Number(grace.value)) })
                : users.createSecret(fields),
            async (made) => {
              await route();
              // The answer is handed over and not kept: the dialog is the secret's only holder.
              showSecretOnce(made.clientId, made.clientSecret, made.expirationDate);
            },
          );
        },
      },
      rotate && field("Grace period for the other secrets", grace),
      description.element,
      expiry.element,
      problems,
      h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", onclick: () => dialog.close() }, "Cancel"), submit),
    ),
  );
}

function quoted(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

function showSecretOnce(clientId: string, clientSecret: string, expires: Timestamp | undefined): void {
  const curl =
    `curl -sS ${quoted(location.origin + TOKEN_PATH)} -d grant_type=client_credentials ` +
    `--data-urlencode ${quoted(`client_id=${clientId}`)} --data-urlencode ${quoted(`client_secret=${clientSecret}`)}`;
  const environment = `export CLIENT_ID=${quoted(clientId)} CLIENT_SECRET=${quoted(clientSecret)}`;
  showOnce(
    "Copy the new client secret now",
    "secrets-title",
    copyable("Client id", clientId),
    copyable("Client secret", clientSecret, 2),
    copyable("Get an access token with curl", curl, 5),
    copyable("As environment variables", environment, 4),
    h("p", {}, "Expires: ", time(expires, "never")),
  );
}

// Something shown once (a secret, a token). Every way out (Done, Escape) asks first, since what
// is not stored is lost; closing empties the dialog's fields and removes it from the page, and
// nothing else holds what it showed, so the browser lets it go.
function showOnce(title: string, returnTo: string, ...body: HTMLElement[]): void {
  showOnceWith(title, returnTo, " It is stored only as a hash. Put it in your secret store now; if it is lost, make a new one.", ...body);
}

function showOnceWith(title: string, returnTo: string, stored: string, ...body: HTMLElement[]): void {
  const done = h("button", { type: "button", class: "done" }, "Done: I have stored it");
  const back = h("button", { type: "button", class: "secondary" }, "Back to it");
  const close = h("button", { type: "button", class: "danger" }, "Close it");
  const ask = h(
    "div",
    { class: "confirm-close warning", role: "group", "aria-labelledby": "confirm-close-words", hidden: true },
    h("p", { id: "confirm-close-words" }, h("strong", {}, "Close it for good?"), " It cannot be shown again: if it was not stored, you will have to make a new one."),
    h("div", { class: "actions" }, back, close),
  );
  const dialog = modal(
    title,
    h(
      "p",
      { class: "warning" },
      h("strong", {}, "This will not be shown again."),
      stored,
    ),
    ...body,
    h("div", { class: "actions" }, done),
    ask,
  );
  dialog.classList.add("once");
  const asking = (yes: boolean): void => {
    ask.hidden = !yes;
    done.hidden = yes;
    (yes ? back : done).focus();
  };
  const forget = (): void => {
    for (const f of dialog.querySelectorAll<HTMLInputElement | HTMLTextAreaElement>("input, textarea")) f.value = "";
    dialog.replaceChildren();
  };
  done.addEventListener("click", () => asking(true));
  back.addEventListener("click", () => asking(false));
  close.addEventListener("click", () => {
    forget();
    dialog.close();
  });
  // Escape asks (and, asked, goes back); the browser's own close requests are held the same way.
  dialog.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    event.preventDefault();
    asking(ask.hidden);
  });
  dialog.addEventListener("cancel", (event) => {
    event.preventDefault();
    asking(true);
  });
  dialog.addEventListener("close", () => {
    forget();
    document.getElementById(returnTo)?.focus();
  });
}

function deleteDialog(user: User, secret: Secret): void {
  const problems = h("div", {});
  const confirm = h("button", { type: "button", class: "danger" }, "Delete secret");
  const cancel = h("button", { type: "button", class: "secondary", autofocus: true }, "Cancel");
  const mineToo = isMe(user) && secret.hint === session.hint();
  const dialog = modal(
    "Delete this secret?",
    h(
      "p",
      {},
      "Secret ",
      h("code", {}, secretLabel(secret)),
      secret.description ? ` (${secret.description})` : "",
      ` of ${user.userName} stops working at once, and so do the access tokens it earned. This cannot be undone.`,
    ),
    mineToo &&
      h(
        "p",
        { class: "warning", id: "signed-in-with" },
        h("strong", {}, "This is the secret you signed in with. "),
        "Deleting it ends your session here at once; sign in again with another secret or a personal access token.",
      ),
    problems,
    h("div", { class: "actions" }, cancel, confirm),
  );
  cancel.addEventListener("click", () => dialog.close());
  confirm.addEventListener("click", () => {
    act(
      dialog,
      confirm,
      problems,
      () => users.deleteSecret({ userId: user.id, secretId: secret.secretId }),
      async () => {
        await route();
        announce(`Secret ${secretLabel(secret)} deleted.`);
      },
    );
  });
}

// ---- Personal access tokens -------------------------------------------------------------------

async function tokensTab(user: User, content: HTMLElement, mine: number): Promise<void> {
  const list = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  content.replaceChildren(
    h(
      "section",
      { "aria-labelledby": "tokens-title" },
      h(
        "div",
        { class: "heading" },
        h("h2", { id: "tokens-title", tabindex: -1 }, "Personal access tokens"),
        h("div", { class: "buttons" }, gated(h("button", { type: "button", onclick: () => tokenDialog(user) }, "New token"), "user.write", true)),
      ),
      h("p", { class: "lead" }, "A personal access token is sent as “authorization: Bearer …” on every call, with no token endpoint. Each is shown once."),
      list,
    ),
  );
  applyGates();
  const listed = await attempt(() => users.listPersonalAccessTokens({ userId: user.id }), list);
  if (listed === undefined || mine !== rendering) return;
  if (listed.tokens.length === 0) {
    list.replaceChildren(h("p", { class: "empty" }, "No personal access tokens."));
    return;
  }
  list.replaceChildren(
    table(
      `Personal access tokens of ${user.userName}`,
      ["Token id", "Created", "Expires", "Last used", "Actions"],
      listed.tokens.map((token) =>
        h(
          "tr",
          {},
          cell("Token id", h("code", {}, token.tokenId)),
          cell("Created", time(token.creationDate)),
          cell("Expires", time(token.expirationDate, "Never")),
          cell("Last used", time(token.lastUsed, "Never")),
          cell(
            "Actions",
            gated(
              h(
                "button",
                { type: "button", class: "danger", "aria-label": `Revoke token ${token.tokenId}`, onclick: () => revokeDialog(user, token.tokenId) },
                "Revoke",
              ),
              "user.write",
              true,
            ),
          ),
        ),
      ),
    ),
  );
}

function tokenDialog(user: User): void {
  const expiry = expiryField("No expiry");
  const problems = h("div", {});
  const submit = h("button", { type: "submit" }, "Create token");
  const dialog = modal(
    "New personal access token",
    inOrg(),
    h("p", {}, `It acts as ${user.userName}, with its roles, until it expires or is revoked.`),
    h(
      "form",
      {
        onsubmit: (event: Event) => {
          event.preventDefault();
          const expirationDate = expiry.value();
          act(
            dialog,
            submit,
            problems,
            () => users.addPersonalAccessToken({ userId: user.id, expirationDate }),
            async (made) => {
              await route();
              showOnce(
                "Copy the new personal access token now",
                "tokens-title",
                copyable("Personal access token", made.token, 2),
                h("p", {}, "Expires: ", time(expirationDate, "never")),
              );
            },
          );
        },
      },
      expiry.element,
      problems,
      h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", onclick: () => dialog.close() }, "Cancel"), submit),
    ),
  );
}

function revokeDialog(user: User, tokenId: string): void {
  const problems = h("div", {});
  const confirm = h("button", { type: "button", class: "danger" }, "Revoke token");
  const cancel = h("button", { type: "button", class: "secondary", autofocus: true }, "Cancel");
  const dialog = modal(
    "Revoke this token?",
    h("p", {}, "Token ", h("code", {}, tokenId), ` of ${user.userName} is refused from now on, by every call that sends it. This cannot be undone.`),
    !session.byClient() &&
      h("p", { class: "muted" }, "If you signed in with this very token, your session ends with it."),
    problems,
    h("div", { class: "actions" }, cancel, confirm),
  );
  cancel.addEventListener("click", () => dialog.close());
  confirm.addEventListener("click", () => {
    act(
      dialog,
      confirm,
      problems,
      () => users.removePersonalAccessToken({ userId: user.id, tokenId }),
      async () => {
        await route();
        announce(`Token ${tokenId} revoked.`);
      },
    );
  });
}

// ---- Roles ------------------------------------------------------------------------------------

async function rolesTab(user: User, content: HTMLElement, mine: number, focus = false): Promise<void> {
  content.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  const found = await attempt(() => orgs.listOrgMembers({ userId: user.id }), content);
  if (found === undefined || mine !== rendering) return;
  const held = found.members[0]?.roles ?? [];
  const problems = h("div", {});
  const boxes = ROLES.map((role) => h("input", { type: "checkbox", name: "role", value: role }));
  const grant = gated(h("button", { type: "submit" }, "Grant roles"), "org.member.write");
  const remove = gated(
    h("button", { type: "button", class: "danger", onclick: () => removeMemberDialog(user, content, mine) }, "Remove from organisation"),
    "org.member.write",
    true,
  );
  // What it holds now; a member's roles change by removing it and granting them again, so a member
  // is offered the removal, and a user without roles here the grant.
  const holds =
    held.length > 0
      ? h(
          "div",
          { class: "held" },
          h("p", {}, `${user.userName} holds these roles in ${orgName()}:`),
          h("ul", { class: "roles-held" }, ...held.map((role) => h("li", {}, badge(role, "role")))),
        )
      : h("p", { class: "held empty" }, `${user.userName} holds no roles in ${orgName()}.`);
  const form =
    held.length > 0
      ? h("div", { class: "card" }, problems, h("div", { class: "buttons" }, remove))
      : h(
          "form",
          {
            class: "card",
            onsubmit: (event: Event) => {
              event.preventDefault();
              const roles = boxes.filter((b) => b.checked).map((b) => b.value);
              if (roles.length === 0) {
                showProblem(problems, problemText("Choose at least one role to grant."));
                return;
              }
              grant.disabled = true;
              void (async () => {
                const done = await attempt(() => orgs.addOrgMember({ userId: user.id, roles }), problems);
                grant.disabled = false;
                if (done === undefined) return;
                await rolesTab(user, content, mine, true);
                announce(`${roles.join(", ")} granted to ${user.userName}.`);
              })();
            },
          },
          h(
            "fieldset",
            { class: "choice" },
            h("legend", {}, "Roles to grant"),
            ...boxes.map((box) => h("label", {}, box, box.value)),
          ),
          problems,
          h("div", { class: "buttons" }, grant),
        );
  content.replaceChildren(
    h(
      "section",
      { "aria-labelledby": "roles-title" },
      h("div", { class: "heading" }, h("h2", { id: "roles-title", tabindex: -1 }, "Roles in this organisation")),
      h(
        "p",
        { class: "lead" },
        `Roles make ${user.userName} a member of ${orgName()}, with their permissions there. ` +
          "A member's roles are changed by removing it and granting them again; you may grant only roles you hold. Its history shows its grants.",
      ),
      holds,
      form,
    ),
  );
  applyGates();
  if (focus) document.getElementById("roles-title")?.focus();
}

function removeMemberDialog(user: User, content: HTMLElement, mine: number): void {
  const problems = h("div", {});
  const confirm = h("button", { type: "button", class: "danger" }, "Remove membership");
  const cancel = h("button", { type: "button", class: "secondary", autofocus: true }, "Cancel");
  const dialog = modal(
    `Remove ${user.userName} from ${orgName()}?`,
    h("p", {}, `Its roles here end at once: it can no longer do what they allowed in ${orgName()}. The user and its credentials stay.`),
    problems,
    h("div", { class: "actions" }, cancel, confirm),
  );
  cancel.addEventListener("click", () => dialog.close());
  confirm.addEventListener("click", () => {
    act(
      dialog,
      confirm,
      problems,
      () => orgs.removeOrgMember({ userId: user.id }),
      async () => {
        await rolesTab(user, content, mine, true);
        announce(`${user.userName} is no longer a member of ${orgName()}.`);
      },
    );
  });
}

// ---- History ----------------------------------------------------------------------------------

const CREDENTIALS: Record<string, string> = {
  pat: "personal access token",
  access_token: "access token",
  secret: "client secret",
  system: "the service",
  anonymous: "anonymous report",
  unknown: "not recorded",
};

async function historyTab(user: User, content: HTMLElement, mine: number, tokens: string[], keep = ""): Promise<void> {
  const list = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  content.replaceChildren(
    h(
      "section",
      { "aria-labelledby": "history-title" },
      h("div", { class: "heading" }, h("h2", { id: "history-title", tabindex: -1 }, "History")),
      h("p", { class: "lead" }, "What happened to this user and its credentials, newest first: who did it, when, and from where."),
      list,
    ),
  );
  const page = await attempt(() => audit.listUserEvents({ userId: user.id, pageSize: 20, pageToken: tokens.at(-1) }), list);
  if (page === undefined || mine !== rendering) return;
  if (page.events.length === 0) {
    list.replaceChildren(h("p", { class: "empty" }, "No events."));
    return;
  }
  // The actors by name, where the caller may see them.
  const names = new Map<string, string>([[user.id, user.userName]]);
  const ids = [...new Set(page.events.map((e) => e.actor?.userId ?? ""))].filter((id) => id && !names.has(id));
  await Promise.all(
    ids.map((userId) =>
      users.getUserByID({ userId }).then(
        (found) => found.user && names.set(userId, found.user.userName),
        () => undefined,
      ),
    ),
  );
  if (mine !== rendering) return;
  const who = (event: HistoryEvent): Node => {
    const actor = event.actor;
    if (!actor?.userId) return document.createTextNode(CREDENTIALS[actor?.credentialKind ?? "unknown"] ?? "—");
    const name = names.get(actor.userId) ?? `user ${actor.userId}`;
    const by = CREDENTIALS[actor.credentialKind] ?? actor.credentialKind;
    return h("span", {}, h("strong", {}, name), by ? ` with a ${by}` : "");
  };
  const previous = h("button", { type: "button", class: "secondary", disabled: tokens.length === 1 }, "Previous");
  const next = h("button", { type: "button", class: "secondary", disabled: !page.nextPageToken }, "Next");
  previous.addEventListener("click", () => void historyTab(user, content, mine, tokens.slice(0, -1), "Previous"));
  next.addEventListener("click", () => void historyTab(user, content, mine, [...tokens, page.nextPageToken], "Next"));
  list.replaceChildren(
    table(
      `History of ${user.userName}`,
      ["When", "What", "Who", "From"],
      page.events.map((event) =>
        h(
          "tr",
          {},
          cell("When", time(event.creationDate)),
          cell("What", h("code", {}, event.eventType)),
          cell("Who", who(event)),
          cell("From", event.actor?.peer ? `${event.actor.peer} (${event.actor.transport})` : event.actor?.transport || "—"),
        ),
      ),
    ),
    h("nav", { class: "pager", "aria-label": "Pages of history" }, h("span", { class: "page" }, `Page ${tokens.length}`), previous, next),
  );
  if (keep) (keep === "Next" && !next.disabled ? next : previous.disabled ? next : previous).focus();
}

// ---- The organisation's secret policy ---------------------------------------------------------

const days = (d: Duration | undefined): string => (d ? String(Number(d.seconds) / 86_400) : "");

async function policyPage(mine: number): Promise<void> {
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  show(
    h("div", { class: "heading" }, h("h1", { tabindex: -1 }, "Secret policy")),
    h("p", { class: "lead" }, `What the client secrets of ${orgName()}'s machine users may be. Empty: no rule.`),
    body,
  );
  const read = await attempt(() => orgs.getSecretPolicy({}), body);
  if (read === undefined || mine !== rendering) return;
  const policy: SecretPolicy | undefined = read.policy;
  const number = (value: string) => h("input", { type: "number", min: 0, step: "any", inputmode: "decimal", value });
  const maxLifetime = number(days(policy?.maxLifetime));
  const defaultLifetime = number(days(policy?.defaultLifetime));
  const maxGrace = number(days(policy?.maxGracePeriod));
  const maxSecrets = h("input", {
    type: "number",
    min: 1,
    step: 1,
    value: policy?.maxSecretsPerUser?.toString() ?? "",
    placeholder: `${LIMITS.defaultMaxSecrets} (the default)`,
  });
  const problems = h("div", {});
  const save = gated(h("button", { type: "submit" }, "Save policy"), "policy.write");
  const duration = (input: HTMLInputElement): Duration | undefined =>
    input.value === "" ? undefined : durationFromMs(Math.round(Number(input.value) * DAY_MS));
  body.replaceChildren(
    h(
      "form",
      {
        class: "card policy",
        onsubmit: (event: Event) => {
          event.preventDefault();
          save.disabled = true;
          void (async () => {
            const saved = await attempt(
              () =>
                orgs.setSecretPolicy({
                  policy: {
                    maxLifetime: duration(maxLifetime),
                    defaultLifetime: duration(defaultLifetime),
                    maxGracePeriod: duration(maxGrace),
                    maxSecretsPerUser: maxSecrets.value === "" ? undefined : Number(maxSecrets.value),
                  },
                }),
              problems,
            );
            save.disabled = false;
            if (saved === undefined) return;
            problems.replaceChildren();
            announce("Secret policy saved.");
          })();
        },
      },
      inOrg(),
      field("Longest lifetime of a secret, in days", maxLifetime, "A secret may not be made to live longer."),
      field("Default lifetime, in days", defaultLifetime, "For a secret made without an expiry."),
      field("Longest grace period of a rotation, in days", maxGrace),
      field("Most live secrets a user may have", maxSecrets, `Empty: ${LIMITS.defaultMaxSecrets}, the service's default.`),
      problems,
      h("div", { class: "buttons" }, save),
    ),
  );
  applyGates();
}

// ---- Keys -------------------------------------------------------------------------------------

async function keysTab(user: User, content: HTMLElement, mine: number): Promise<void> {
  const list = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  content.replaceChildren(
    h(
      "section",
      { "aria-labelledby": "keys-title" },
      h(
        "div",
        { class: "heading" },
        h("h2", { id: "keys-title", tabindex: -1 }, "Keys"),
        h("div", { class: "buttons" }, gated(h("button", { type: "button", onclick: () => keyDialog(user) }, "Add key"), "user.write", true)),
      ),
      h(
        "p",
        { class: "lead" },
        `A key signs the JWT that ${user.userName} sends for an access token (the JWT profile grant, RFC 7523), so no secret travels. ` +
          "Only public keys are stored: a key pair made here is handed over once, as a key file.",
      ),
      list,
    ),
  );
  applyGates();
  const listed = await attempt(() => users.listKeys({ userId: user.id }), list);
  if (listed === undefined || mine !== rendering) return;
  if (listed.keys.length === 0) {
    list.replaceChildren(h("p", { class: "empty" }, "No keys."));
    return;
  }
  list.replaceChildren(
    table(
      `Keys of ${user.userName}`,
      ["Key id", "Type", "Created", "Expires", "Last used", "State", "Actions"],
      listed.keys.map((key: MachineKey) =>
        h(
          "tr",
          {},
          cell("Key id", h("code", {}, key.keyId)),
          cell("Type", key.keyType === "EC" ? "EC P-256 (ES256)" : `${key.keyType} (RS256)`),
          cell("Created", time(key.creationDate)),
          cell("Expires", time(key.expirationDate, "Never")),
          cell("Last used", time(key.lastUsed, "Never")),
          cell("State", key.state === KeyState.EXPIRED ? badge("Expired", "off") : badge("Active", "on")),
          cell(
            "Actions",
            gated(
              h(
                "button",
                {
                  type: "button",
                  class: "danger",
                  "aria-label": `Remove key ${key.keyId}`,
                  onclick: () =>
                    confirmDialog(
                      "Remove this key?",
                      `Key ${key.keyId} of ${user.userName} is refused at once, and so are the access tokens it earned. This cannot be undone.`,
                      "Remove key",
                      () => users.removeKey({ userId: user.id, keyId: key.keyId }),
                      `Key ${key.keyId} removed.`,
                    ),
                },
                "Remove",
              ),
              "user.write",
              true,
            ),
          ),
        ),
      ),
    ),
  );
}

function keyDialog(user: User): void {
  const expiry = expiryField("No expiry (or the organisation's default)");
  const pem = h("textarea", { rows: 5, spellcheck: "false", class: "mono", placeholder: "-----BEGIN PUBLIC KEY-----" });
  const pemField = field("Public key (PEM)", pem, "RSA of 2048 to 4096 bits, or EC P-256.");
  const choose = (upload: boolean) => () => {
    pemField.hidden = !upload;
    pem.required = upload;
  };
  const problems = h("div", {});
  const submit = h("button", { type: "submit" }, "Add key");
  const dialog = modal(
    "Add a key",
    inOrg(),
    h(
      "form",
      {
        onsubmit: (event: Event) => {
          event.preventDefault();
          const publicKey = pemField.hidden ? new Uint8Array() : new TextEncoder().encode(pem.value.trim());
          act(
            dialog,
            submit,
            problems,
            () => users.addKey({ userId: user.id, expirationDate: expiry.value(), publicKey }),
            async (made) => {
              await route();
              if (made.keyContent.length === 0) {
                announce(`Key ${made.keyId} added.`);
                return;
              }
              showKeyFileOnce(made.keyId, made.keyContent, made.expirationDate);
            },
          );
        },
      },
      h(
        "fieldset",
        { class: "choice" },
        h("legend", {}, "The key"),
        h("label", {}, h("input", { type: "radio", name: "key-source", checked: true, onchange: choose(false) }), "Make a key pair here, and download its key file once"),
        h("label", {}, h("input", { type: "radio", name: "key-source", onchange: choose(true) }), "Upload a public key of my own"),
      ),
      pemField,
      expiry.element,
      problems,
      h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", onclick: () => dialog.close() }, "Cancel"), submit),
    ),
  );
  choose(false)();
}

// The key file of a key pair made by the service: its private key exists nowhere else, so it is
// shown once, with a download; the download's address is revoked when the dialog closes.
function showKeyFileOnce(keyId: string, content: Uint8Array, expires: Timestamp | undefined): void {
  const text = new TextDecoder().decode(content);
  let address = URL.createObjectURL(new Blob([text], { type: "application/json" }));
  const download = h("a", { class: "button", href: address, download: `${keyId}.json` }, "Download the key file");
  showOnceWith(
    "Copy the new key file now",
    "keys-title",
    " Its private key is kept nowhere else: only the public key is stored. Put the key file in your secret store now; if it is lost, add a new key.",
    copyable("Key file", text, 6),
    h("p", {}, download),
    h("p", {}, "Key id: ", h("code", {}, keyId), ". Expires: ", time(expires, "never")),
  );
  // The file is read from its start (a focused field's caret, and so its view, starts at its end).
  const file = document.querySelector<HTMLTextAreaElement>("dialog.once textarea");
  file?.setSelectionRange(0, 0);
  if (file) file.scrollTop = 0;
  document.querySelector("dialog.once")?.addEventListener("close", () => {
    URL.revokeObjectURL(address);
    address = "";
  });
}

// A confirmation before something is removed: says what stops working, starts on Cancel.
function confirmDialog(title: string, says: string, button: string, call: () => Promise<unknown>, done: string, after: () => Promise<void> = route): void {
  const problems = h("div", {});
  const confirm = h("button", { type: "button", class: "danger" }, button);
  const cancel = h("button", { type: "button", class: "secondary", autofocus: true }, "Cancel");
  const dialog = modal(title, h("p", {}, says), problems, h("div", { class: "actions" }, cancel, confirm));
  cancel.addEventListener("click", () => dialog.close());
  confirm.addEventListener("click", () => {
    act(dialog, confirm, problems, call, async () => {
      await after();
      announce(done);
    });
  });
}

// ---- Federated credentials --------------------------------------------------------------------

// What a federated credential accepts, in words, for the platforms whose subjects say it plainly.
function accepts(credential: FederatedCredential): string {
  const k8s = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(credential.subject);
  if (k8s) return `The Kubernetes service account “${k8s[2]}” in namespace “${k8s[1]}”`;
  const github = /^repo:([^:]+):(?:ref:refs\/heads\/(.+)|environment:(.+)|pull_request)$/.exec(credential.subject);
  if (github) {
    const where = github[2] ? `on branch “${github[2]}”` : github[3] ? `in environment “${github[3]}”` : "on a pull request";
    return `GitHub Actions of ${github[1]} ${where}`;
  }
  return `The workload whose token says sub “${credential.subject}”`;
}

async function federatedTab(user: User, content: HTMLElement, mine: number): Promise<void> {
  const list = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  content.replaceChildren(
    h(
      "section",
      { "aria-labelledby": "federated-title" },
      h(
        "div",
        { class: "heading" },
        h("h2", { id: "federated-title", tabindex: -1 }, "Federated credentials"),
        h(
          "div",
          { class: "buttons" },
          gated(h("button", { type: "button", onclick: () => void federatedDialog(user) }, "Add federated credential"), "user.write", true),
        ),
      ),
      h(
        "p",
        { class: "lead" },
        `A workload signs in as ${user.userName} with the token its platform gives it (a Kubernetes service-account token, a GitHub Actions OIDC token): ` +
          "nothing is stored to leak. The token's issuer must be one the organisation trusts.",
      ),
      list,
    ),
  );
  applyGates();
  const listed = await attempt(() => users.listFederatedCredentials({ userId: user.id }), list);
  if (listed === undefined || mine !== rendering) return;
  if (listed.credentials.length === 0) {
    list.replaceChildren(h("p", { class: "empty" }, "No federated credentials."));
    return;
  }
  list.replaceChildren(
    table(
      `Federated credentials of ${user.userName}`,
      ["Accepts", "Issuer", "Subject", "Audience", "Created", "Last used", "Actions"],
      listed.credentials.map((c) =>
        h(
          "tr",
          {},
          cell(
            "Accepts",
            accepts(c),
            c.claimName ? h("span", { class: "muted" }, `, with ${c.claimName} = “${c.claimValue}”`) : "",
            c.description ? h("span", { class: "muted" }, ` (${c.description})`) : "",
          ),
          cell("Issuer", h("code", {}, c.issuer)),
          cell("Subject", h("code", {}, c.subject)),
          cell("Audience", h("code", {}, c.audience)),
          cell("Created", time(c.creationDate)),
          cell("Last used", time(c.lastUsed, "Never")),
          cell(
            "Actions",
            gated(
              h(
                "button",
                {
                  type: "button",
                  class: "danger",
                  "aria-label": `Remove federated credential for ${c.subject}`,
                  onclick: () =>
                    confirmDialog(
                      "Remove this federated credential?",
                      `Tokens of ${c.issuer} for ${c.subject} no longer sign in as ${user.userName}, and the access tokens they earned are refused at once.`,
                      "Remove credential",
                      () => users.removeFederatedCredential({ userId: user.id, credentialId: c.credentialId }),
                      "Federated credential removed.",
                    ),
                },
                "Remove",
              ),
              "user.write",
              true,
            ),
          ),
        ),
      ),
    ),
  );
}

async function federatedDialog(user: User): Promise<void> {
  // The organisation's trusted issuers, offered as choices where the caller may read them.
  const trusted = await orgs.listTrustedIssuers({}).then((l) => l.issuers.map((i) => i.issuer), () => [] as string[]);
  const choices = h("datalist", { id: "trusted-issuers" }, ...trusted.map((i) => h("option", { value: i })));
  const text = (attrs: Record<string, string | boolean> = {}) => h("input", { autocomplete: "off", spellcheck: "false", ...attrs });
  const issuer = text({ required: true, list: "trusted-issuers", type: "url", value: trusted[0] ?? "" });
  const subject = limitedField("Subject (sub)", text({ required: true }), 500, "Exactly, no wildcards: system:serviceaccount:NAMESPACE:NAME, or repo:OWNER/REPO:ref:refs/heads/BRANCH.");
  const audience = limitedField("Audience (aud)", text({ required: true }), 500, "A value the token's aud must contain.");
  const claimName = text();
  const claimValue = text();
  const description = limitedField("Description (optional)", text(), 500);
  const problems = h("div", {});
  const submit = h("button", { type: "submit" }, "Add credential");
  const value = (f: { control: HTMLElement }): string => (f.control as HTMLInputElement).value.trim();
  const dialog = modal(
    "Add a federated credential",
    inOrg(),
    h(
      "form",
      {
        onsubmit: (event: Event) => {
          event.preventDefault();
          if (overLimit(problems, [subject, audience, description])) return;
          act(
            dialog,
            submit,
            problems,
            () =>
              users.addFederatedCredential({
                userId: user.id,
                issuer: issuer.value.trim(),
                subject: value(subject),
                audience: value(audience),
                description: value(description),
                claimName: claimName.value.trim(),
                claimValue: claimValue.value.trim(),
              }),
            async () => {
              await route();
              announce("Federated credential added.");
            },
          );
        },
      },
      field("Issuer (iss)", issuer, trusted.length > 0 ? "One of the organisation's trusted issuers." : "A trusted issuer of the organisation, as its tokens name it."),
      choices,
      subject.element,
      audience.element,
      field("Further claim (optional)", claimName, "e.g. environment, or job_workflow_ref"),
      field("Its value", claimValue),
      description.element,
      problems,
      h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", onclick: () => dialog.close() }, "Cancel"), submit),
    ),
  );
}

// ---- Trusted issuers --------------------------------------------------------------------------

async function issuersPage(mine: number): Promise<void> {
  const list = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  show(
    h(
      "div",
      { class: "heading" },
      h("h1", { tabindex: -1 }, "Trusted issuers"),
      h("div", { class: "buttons" }, gated(h("button", { type: "button", onclick: () => issuerDialog() }, "Trust an issuer"), "policy.write")),
    ),
    h(
      "p",
      { class: "lead" },
      `The platforms whose workload tokens ${orgName()} accepts, for its machine users' federated credentials. Removing one refuses its tokens at once.`,
    ),
    list,
  );
  const listed = await attempt(() => orgs.listTrustedIssuers({}), list);
  if (listed === undefined || mine !== rendering) return;
  if (listed.issuers.length === 0) {
    list.replaceChildren(h("p", { class: "empty" }, "No trusted issuers."));
    return;
  }
  list.replaceChildren(
    table(
      `Trusted issuers of ${orgName()}`,
      ["Issuer", "Keys from", "Description", "Added", "Actions"],
      listed.issuers.map((issuer) =>
        h(
          "tr",
          {},
          cell("Issuer", h("code", {}, issuer.issuer)),
          cell("Keys from", issuer.inlineJwks ? "Given inline" : issuer.jwksUri ? h("code", {}, issuer.jwksUri) : "The issuer's discovery document"),
          cell("Description", issuer.description || "—"),
          cell("Added", time(issuer.creationDate)),
          cell(
            "Actions",
            gated(
              h(
                "button",
                {
                  type: "button",
                  class: "danger",
                  "aria-label": `Remove ${issuer.issuer}`,
                  onclick: () =>
                    confirmDialog(
                      "Stop trusting this issuer?",
                      `Tokens of ${issuer.issuer} are refused at once, by every federated credential that names it. The credentials stay, and work again if it is trusted again.`,
                      "Stop trusting",
                      () => orgs.removeTrustedIssuer({ issuerId: issuer.issuerId }),
                      `${issuer.issuer} is no longer trusted.`,
                    ),
                },
                "Remove",
              ),
              "policy.write",
            ),
          ),
        ),
      ),
    ),
  );
  applyGates();
}

function issuerDialog(): void {
  const issuer = h("input", { type: "url", required: true, autocomplete: "off", spellcheck: "false", placeholder: "https://" });
  const jwksUri = h("input", { type: "url", autocomplete: "off", spellcheck: "false" });
  const jwks = h("textarea", { rows: 5, spellcheck: "false", class: "mono", placeholder: '{"keys": [...]}' });
  const uriField = field("JWKS address", jwksUri);
  const inlineField = field("JWKS document", jwks, "e.g. the output of kubectl get --raw /openid/v1/jwks. Nothing is fetched.");
  const choose = (source: string) => () => {
    uriField.hidden = source !== "uri";
    inlineField.hidden = source !== "inline";
    jwksUri.required = !uriField.hidden;
    jwks.required = !inlineField.hidden;
  };
  const description = limitedField("Description (optional)", h("input", { autocomplete: "off" }), 500);
  const problems = h("div", {});
  const submit = h("button", { type: "submit" }, "Trust issuer");
  const radio = (value: string, label: string, checked = false) =>
    h("label", {}, h("input", { type: "radio", name: "jwks-source", value, checked, onchange: choose(value) }), label);
  const dialog = modal(
    "Trust an issuer",
    inOrg(),
    h(
      "form",
      {
        onsubmit: (event: Event) => {
          event.preventDefault();
          if (overLimit(problems, [description])) return;
          act(
            dialog,
            submit,
            problems,
            () =>
              orgs.addTrustedIssuer({
                issuer: issuer.value.trim(),
                jwksUri: uriField.hidden ? "" : jwksUri.value.trim(),
                jwks: inlineField.hidden ? "" : jwks.value.trim(),
                description: (description.control as HTMLInputElement).value.trim(),
              }),
            async () => {
              await route();
              announce(`${issuer.value.trim()} is trusted.`);
            },
          );
        },
      },
      field("Issuer", issuer, "Exactly as its tokens name it in iss."),
      h(
        "fieldset",
        { class: "choice" },
        h("legend", {}, "Its keys"),
        radio("discovery", "From its discovery document", true),
        radio("uri", "From a JWKS address"),
        radio("inline", "Given here (a JWKS document)"),
      ),
      uriField,
      inlineField,
      description.element,
      problems,
      h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", onclick: () => dialog.close() }, "Cancel"), submit),
    ),
  );
  choose("discovery")();
}

// ---- Projects ---------------------------------------------------------------------------------

async function projectsPage(mine: number): Promise<void> {
  const list = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  show(
    h(
      "div",
      { class: "heading" },
      h("h1", { tabindex: -1 }, "Projects"),
      h("div", { class: "buttons" }, gated(h("button", { type: "button", onclick: () => projectDialog() }, "New project"), "project.write")),
    ),
    h(
      "p",
      { class: "lead" },
      `The APIs of ${orgName()}: each is the audience of the tokens meant for it, with roles to grant to users and API applications that check tokens.`,
    ),
    list,
  );
  const listed = await attempt(() => projects.listProjects({}), list);
  if (listed === undefined || mine !== rendering) return;
  if (listed.projects.length === 0) {
    list.replaceChildren(h("p", { class: "empty" }, "No projects yet."));
    return;
  }
  list.replaceChildren(
    table(
      `Projects of ${orgName()}`,
      ["Name", "Project id", "Created"],
      listed.projects.map((p) =>
        h(
          "tr",
          {},
          cell("Name", h("a", { href: `#/projects/${p.id}` }, p.name)),
          cell("Project id", h("code", {}, p.id)),
          cell("Created", time(p.details?.creationDate)),
        ),
      ),
    ),
  );
}

function projectDialog(): void {
  const name = limitedField("Name", h("input", { required: true, autocomplete: "off" }), LIMITS.name);
  const problems = h("div", {});
  const submit = h("button", { type: "submit" }, "Create");
  const dialog = modal(
    "New project",
    inOrg(),
    h(
      "form",
      {
        onsubmit: (event: Event) => {
          event.preventDefault();
          if (overLimit(problems, [name])) return;
          act(
            dialog,
            submit,
            problems,
            () => projects.addProject({ name: (name.control as HTMLInputElement).value.trim() }),
            (made) => {
              announce("Project created.");
              location.hash = `#/projects/${made.projectId}`;
            },
          );
        },
      },
      name.element,
      problems,
      h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", onclick: () => dialog.close() }, "Cancel"), submit),
    ),
  );
}

async function projectPage(projectId: string, mine: number): Promise<void> {
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  show(h("p", { class: "crumbs" }, h("a", { href: "#/projects" }, "← Projects")), h("h1", { tabindex: -1 }, "Project"), body);
  const found = await attempt(() => projects.getProject({ projectId }), body);
  if (found?.project === undefined || mine !== rendering) return;
  const project = found.project;
  (main.querySelector("h1") as HTMLElement).textContent = project.name;
  document.title = `${project.name} · machine-secrets console`;
  const [roles, apps, grants] = await Promise.all([
    attempt(() => projects.listProjectRoles({ projectId }), body),
    attempt(() => projects.listApps({ projectId }), body),
    attempt(() => projects.listUserGrants({}), body),
  ]);
  if (roles === undefined || apps === undefined || grants === undefined || mine !== rendering) return;
  const reload = () => projectPage(projectId, mine === rendering ? ++rendering : rendering);
  const removeButton = (label: string, permission: string, onclick: () => void) =>
    gated(h("button", { type: "button", class: "danger", "aria-label": label, onclick }, "Remove"), permission);
  const section = (id: string, title: string, button: HTMLElement | false, lead: string, list: Node) =>
    h(
      "section",
      { "aria-labelledby": id },
      h("div", { class: "heading" }, h("h2", { id, tabindex: -1 }, title), button && h("div", { class: "buttons" }, button)),
      h("p", { class: "lead" }, lead),
      list,
    );
  const roleKeys = roles.roles.map((r) => r.key);
  const mineGrants = grants.grants.filter((g) => g.projectId === projectId);
  body.replaceChildren(
    h(
      "dl",
      { class: "about" },
      h("dt", {}, "Project id"),
      h("dd", {}, h("code", {}, project.id)),
      h("dt", {}, "Audience scope"),
      h("dd", {}, h("code", {}, `urn:zitadel:iam:org:project:id:${project.id}:aud`)),
      h("dt", {}, "Organisation"),
      h("dd", {}, orgName()),
    ),
    h(
      "div",
      { class: "buttons" },
      gated(
        h(
          "button",
          {
            type: "button",
            class: "danger",
            onclick: () =>
              confirmDialog(
                `Remove ${project.name}?`,
                "Its roles, its API applications (their secrets end at once) and its user grants go with it. This cannot be undone.",
                "Remove project",
                () => projects.removeProject({ projectId }),
                `${project.name} removed.`,
                async () => {
                  location.hash = "#/projects";
                },
              ),
          },
          "Remove project",
        ),
        "project.write",
      ),
    ),
    section(
      "roles-title",
      "Roles",
      gated(h("button", { type: "button", onclick: () => roleDialog(project, reload) }, "Add role"), "project.write"),
      "Role keys travel in scopes and claims: a user grant gives a user some of them.",
      roles.roles.length === 0
        ? h("p", { class: "empty" }, "No roles.")
        : table(
            `Roles of ${project.name}`,
            ["Key", "Display name", "Group", "Actions"],
            roles.roles.map((r) =>
              h(
                "tr",
                {},
                cell("Key", h("code", {}, r.key)),
                cell("Display name", r.displayName || "—"),
                cell("Group", r.group || "—"),
                cell(
                  "Actions",
                  removeButton(`Remove role ${r.key}`, "project.write", () =>
                    confirmDialog(
                      `Remove the role ${r.key}?`,
                      "No grant asserts it from then on.",
                      "Remove role",
                      () => projects.removeProjectRole({ projectId, roleKey: r.key }),
                      `Role ${r.key} removed.`,
                      reload,
                    ),
                  ),
                ),
              ),
            ),
          ),
    ),
    section(
      "apps-title",
      "API applications",
      gated(h("button", { type: "button", onclick: () => appDialog(project, reload) }, "New API application"), "project.write"),
      "The API itself, as a client of the introspection endpoint: it asks whether a token is active, and what it grants.",
      apps.apps.length === 0
        ? h("p", { class: "empty" }, "No API applications.")
        : table(
            `API applications of ${project.name}`,
            ["Name", "Client id", "Changed", "Actions"],
            apps.apps.map((a) =>
              h(
                "tr",
                {},
                cell("Name", a.name),
                cell("Client id", h("code", {}, a.clientId)),
                cell("Changed", time(a.details?.changeDate)),
                cell(
                  "Actions",
                  removeButton(`Remove application ${a.name}`, "project.write", () =>
                    confirmDialog(
                      `Remove ${a.name}?`,
                      "Its secret stops working at once: the API can no longer check tokens with it.",
                      "Remove application",
                      () => projects.removeApp({ projectId, appId: a.id }),
                      `${a.name} removed.`,
                      reload,
                    ),
                  ),
                ),
              ),
            ),
          ),
    ),
    section(
      "grants-title",
      "User grants",
      gated(h("button", { type: "button", onclick: () => grantDialog(project, roleKeys, reload) }, "Grant roles to a user"), "project.grant.write"),
      "Users of this organisation and the roles of this project they hold.",
      mineGrants.length === 0
        ? h("p", { class: "empty" }, "No user grants.")
        : table(
            `User grants of ${project.name}`,
            ["User", "Roles", "Granted", "Actions"],
            mineGrants.map((g) =>
              h(
                "tr",
                {},
                cell("User", h("a", { href: `#/users/${g.userId}` }, g.userName)),
                cell("Roles", h("span", { class: "states" }, ...g.roleKeys.map((k) => badge(k, "role")))),
                cell("Granted", time(g.details?.creationDate)),
                cell(
                  "Actions",
                  removeButton(`Remove the grant of ${g.userName}`, "project.grant.write", () =>
                    confirmDialog(
                      `Remove the grant of ${g.userName}?`,
                      `Its roles of ${project.name} are asserted no more.`,
                      "Remove grant",
                      () => projects.removeUserGrant({ userId: g.userId, grantId: g.id }),
                      `The grant of ${g.userName} removed.`,
                      reload,
                    ),
                  ),
                ),
              ),
            ),
          ),
    ),
  );
  applyGates();
}

function roleDialog(project: Project, reload: () => Promise<void>): void {
  const key = h("input", { required: true, autocomplete: "off", spellcheck: "false", pattern: "[A-Za-z0-9_.:\\-]{1,200}" });
  const display = limitedField("Display name (optional)", h("input", { autocomplete: "off" }), LIMITS.name);
  const group = limitedField("Group (optional)", h("input", { autocomplete: "off" }), LIMITS.name);
  const problems = h("div", {});
  const submit = h("button", { type: "submit" }, "Add role");
  const dialog = modal(
    `Add a role to ${project.name}`,
    inOrg(),
    h(
      "form",
      {
        onsubmit: (event: Event) => {
          event.preventDefault();
          if (overLimit(problems, [display, group])) return;
          const roleKey = key.value.trim();
          act(
            dialog,
            submit,
            problems,
            () =>
              projects.addProjectRole({
                projectId: project.id,
                roleKey,
                displayName: (display.control as HTMLInputElement).value.trim(),
                group: (group.control as HTMLInputElement).value.trim(),
              }),
            async () => {
              await reload();
              announce(`Role ${roleKey} added.`);
            },
          );
        },
      },
      field("Key", key, "1 to 200 of A-Z, a-z, 0-9 and _ . : -"),
      display.element,
      group.element,
      problems,
      h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", onclick: () => dialog.close() }, "Cancel"), submit),
    ),
  );
}

function appDialog(project: Project, reload: () => Promise<void>): void {
  const name = limitedField("Name", h("input", { required: true, autocomplete: "off" }), LIMITS.name);
  const problems = h("div", {});
  const submit = h("button", { type: "submit" }, "Create");
  const dialog = modal(
    `New API application of ${project.name}`,
    inOrg(),
    h("p", {}, "It gets a client id and a secret for the introspection endpoint (client_secret_basic). The secret is shown once."),
    h(
      "form",
      {
        onsubmit: (event: Event) => {
          event.preventDefault();
          if (overLimit(problems, [name])) return;
          act(
            dialog,
            submit,
            problems,
            () => projects.addApiApp({ projectId: project.id, name: (name.control as HTMLInputElement).value.trim() }),
            async (made) => {
              await reload();
              const curl =
                `curl -sS ${quoted(`${location.origin}/oauth/v2/introspect`)} -u ${quoted(`${made.clientId}:${made.clientSecret}`)} ` +
                `--data-urlencode "token=$ACCESS_TOKEN"`;
              showOnce(
                "Copy the new application secret now",
                "apps-title",
                copyable("Client id", made.clientId),
                copyable("Client secret", made.clientSecret, 2),
                copyable("Check a token with curl", curl, 4),
              );
            },
          );
        },
      },
      name.element,
      problems,
      h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", onclick: () => dialog.close() }, "Cancel"), submit),
    ),
  );
}

function grantDialog(project: Project, roleKeys: string[], reload: () => Promise<void>): void {
  const userName = h("input", { required: true, autocomplete: "off", spellcheck: "false" });
  const boxes = roleKeys.map((key) => h("input", { type: "checkbox", name: "grant-role", value: key }));
  const problems = h("div", {});
  const submit = h("button", { type: "submit" }, "Grant");
  const dialog = modal(
    `Grant roles of ${project.name}`,
    inOrg(),
    roleKeys.length === 0 && h("p", { class: "warning" }, "The project has no roles yet: add one first."),
    h(
      "form",
      {
        onsubmit: (event: Event) => {
          event.preventDefault();
          const roles = boxes.filter((b) => b.checked).map((b) => b.value);
          if (roles.length === 0) {
            showProblem(problems, problemText("Choose at least one role to grant."));
            return;
          }
          const wanted = userName.value.trim();
          act(
            dialog,
            submit,
            problems,
            async () => {
              // The user by its name, in this organisation (ListUsers compares names as the service does).
              const found = await users.listUsers({ userNamePrefix: wanted, pageSize: 10 });
              const user = found.users.find((u) => u.userName.toLowerCase() === wanted.toLowerCase());
              if (!user) throw new ConnectError(`There is no user named “${wanted}” in ${orgName()}.`, Code.NotFound);
              return projects.addUserGrant({ userId: user.id, projectId: project.id, roleKeys: roles });
            },
            async () => {
              await reload();
              announce(`${roles.join(", ")} of ${project.name} granted to ${wanted}.`);
            },
          );
        },
      },
      field("User name", userName, "A user of this organisation."),
      h("fieldset", { class: "choice" }, h("legend", {}, "Roles to grant"), ...boxes.map((box) => h("label", {}, box, box.value))),
      problems,
      h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", onclick: () => dialog.close() }, "Cancel"), submit),
    ),
  );
}

// A problem that is not the API's (a bug here): shown, never swallowed.
window.addEventListener("unhandledrejection", (event) => {
  const problem: Problem = problemOf(event.reason instanceof ConnectError ? event.reason : new ConnectError(String(event.reason), Code.Internal));
  main.prepend(problemBox(problem));
});

window.addEventListener("hashchange", () => void route());
void route();
