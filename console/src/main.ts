// The machine-secrets console: sign in, pick an organisation, list and create machine users, and
// manage their client secrets. Pages are chosen by the address's fragment (#/, #/users/ID), which
// holds ids only: no secret or token is ever put in an address.
import { durationFromMs, type Timestamp, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { exchange, orgs, type Problem, problemOf, SignInRefused, session, TOKEN_PATH, users } from "./api";
import { announce, copyable, field, h, modal, problemBox, time } from "./dom";
import type { Organization } from "./gen/machinesecrets/v1/org_service_pb";
import { type Secret, SecretState, type User, UserState, UserType } from "./gen/machinesecrets/v1/user_service_pb";

const main = document.getElementById("main") as HTMLElement;
const bar = document.getElementById("bar") as HTMLElement;
const PAGE_SIZE = 20;
const DAY_MS = 86_400_000;

// Each render gets a number; an answer that arrives after the person moved on is dropped.
let rendering = 0;
// The users list's search and the page tokens that led to the page shown (the first is "").
let listing = { prefix: "", tokens: [""] };
// The session the bar was drawn for.
let barFor: string | null = null;

function show(...nodes: (Node | false)[]): void {
  main.replaceChildren(...nodes.filter((n): n is Node => n !== false));
  // Keyboard and screen-reader users start at the new page's heading.
  main.querySelector<HTMLElement>("h1")?.focus();
}

// Runs a call; on failure shows the problem in `where` (or returns to sign-in) and gives undefined.
async function attempt<T>(call: () => Promise<T>, where: HTMLElement): Promise<T | undefined> {
  try {
    return await call();
  } catch (error) {
    const problem = problemOf(error);
    if (problem.signIn) signOut(problem.words);
    else where.replaceChildren(problemBox(problem));
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

async function route(): Promise<void> {
  const mine = ++rendering;
  if (!session.token()) {
    signInPage();
    return;
  }
  if (barFor !== session.token() && !(await drawBar())) return;
  if (mine !== rendering) return;
  const user = /^#\/users\/(\d{1,64})$/.exec(location.hash);
  if (user) await userPage(user[1], mine);
  else await usersPage(mine);
}

function signOut(notice: string): void {
  session.end();
  barFor = null;
  listing = { prefix: "", tokens: [""] };
  announce("");
  history.replaceState(null, "", location.pathname);
  signInPage(notice);
}

// ---- Sign-in -------------------------------------------------------------------------------

function signInPage(notice = ""): void {
  rendering++;
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
    void (async () => {
      try {
        if (!pat.disabled) session.begin(pat.value.trim(), "a personal access token");
        else session.begin(await exchange(clientId.value.trim(), clientSecret.value), clientId.value.trim());
      } catch (error) {
        const words = error instanceof SignInRefused ? error.message : String(error);
        problems.replaceChildren(h("div", { class: "problem", role: "alert" }, h("p", { class: "problem-words" }, words)));
        submit.disabled = false;
        return;
      }
      if (location.hash !== "#/") history.replaceState(null, "", "#/");
      await route();
      if (!session.token()) submit.disabled = false;
    })();
  });
  show(
    h(
      "div",
      { class: "sign-in-page" },
      h("p", { class: "brand-large" }, "machine-secrets"),
      h("h1", { tabindex: -1 }, "Sign in to the console"),
      notice && h("p", { class: "notice", role: "status" }, notice),
      form,
    ),
  );
  pat.focus();
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
  try {
    found = await allOrganizations();
  } catch (error) {
    const problem = problemOf(error);
    if (problem.signIn) signOut("That token is not valid, or it has expired or been revoked. Sign in again.");
    else show(h("h1", { tabindex: -1 }, "The console could not start"), problemBox(problem));
    return false;
  }
  if (!found.some((o) => o.orgId === session.org())) session.setOrg(found[0]?.orgId ?? "");
  const select = h("select", {});
  for (const org of found) {
    const option = h("option", { value: org.orgId }, org.name);
    option.selected = org.orgId === session.org();
    select.append(option);
  }
  select.addEventListener("change", () => {
    session.setOrg(select.value);
    listing = { prefix: "", tokens: [""] };
    if (location.hash === "#/") void route();
    else location.hash = "#/";
    announce(`Now acting in ${select.selectedOptions[0]?.textContent ?? "the organisation"}.`);
  });
  bar.replaceChildren(
    h("a", { class: "brand", href: "#/" }, "machine-secrets", h("span", {}, " console")),
    h("div", { class: "org" }, field("Organisation", select)),
    h("span", { class: "who" }, "Signed in with ", h("strong", {}, session.who())),
    h("button", { type: "button", class: "secondary", onclick: () => signOut("You have signed out.") }, "Sign out"),
  );
  bar.hidden = false;
  barFor = session.token();
  return true;
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

async function usersPage(mine: number): Promise<void> {
  const search = h("input", { type: "search", autocomplete: "off", spellcheck: "false", value: listing.prefix });
  const results = h("div", { class: "results", "aria-live": "polite" }, h("p", { class: "muted" }, "Loading…"));
  show(
    h(
      "div",
      { class: "heading" },
      h("h1", { tabindex: -1 }, "Machine users"),
      h("button", { type: "button", onclick: () => newUserDialog() }, "New machine user"),
    ),
    h("p", { class: "lead" }, "Service accounts of this organisation. Each signs in with its user name as client id and one of its client secrets."),
    h(
      "form",
      {
        role: "search",
        class: "search",
        onsubmit: (event: Event) => {
          event.preventDefault();
          listing = { prefix: search.value.trim(), tokens: [""] };
          void route();
        },
      },
      field("Search by user name", search),
      h("button", { type: "submit", class: "secondary" }, "Search"),
    ),
    results,
  );
  const page = listing.tokens.length - 1;
  const answer = await attempt(
    () =>
      users.listUsers({
        userNamePrefix: listing.prefix,
        type: UserType.MACHINE,
        pageSize: PAGE_SIZE,
        pageToken: listing.tokens[page],
      }),
    results,
  );
  if (answer === undefined || mine !== rendering) return;
  if (answer.users.length === 0) {
    results.replaceChildren(
      h(
        "p",
        { class: "empty" },
        listing.prefix
          ? `No machine user's name starts with “${listing.prefix}”.`
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
      cell("Name", user.name),
      cell("State", userState(user.state)),
      cell("Client secret", user.hasSecret ? "Yes" : "None"),
      cell("Created", time(user.details?.creationDate)),
    ),
  );
  const move = (tokens: string[]) => () => {
    listing = { prefix: listing.prefix, tokens };
    void route();
  };
  results.replaceChildren(
    h(
      "table",
      {},
      h("caption", { class: "visually-hidden" }, "Machine users"),
      h("thead", {}, h("tr", {}, ...["User name", "Name", "State", "Client secret", "Created"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, ...rows),
    ),
    h(
      "nav",
      { class: "pager", "aria-label": "Pages" },
      h("button", { type: "button", class: "secondary", disabled: page === 0, onclick: move(listing.tokens.slice(0, -1)) }, "Previous"),
      h("span", {}, `Page ${page + 1}`),
      h(
        "button",
        { type: "button", class: "secondary", disabled: !answer.nextPageToken, onclick: move([...listing.tokens, answer.nextPageToken]) },
        "Next",
      ),
    ),
  );
}

function newUserDialog(): void {
  const userName = h("input", { required: true, maxlength: 200, autocomplete: "off", spellcheck: "false" });
  const name = h("input", { required: true, maxlength: 200, autocomplete: "off" });
  const description = h("input", { maxlength: 500, autocomplete: "off" });
  const problems = h("div", {});
  const submit = h("button", { type: "submit" }, "Create");
  const dialog = modal(
    "New machine user",
    h(
      "form",
      {
        onsubmit: (event: Event) => {
          event.preventDefault();
          act(
            dialog,
            submit,
            problems,
            () => users.addMachineUser({ userName: userName.value.trim(), name: name.value.trim(), description: description.value.trim() }),
            (made) => {
              announce("Machine user created.");
              location.hash = `#/users/${made.userId}`;
            },
          );
        },
      },
      field("User name", userName, "The client id. Unique in the whole service, no spaces."),
      field("Name", name),
      field("Description (optional)", description),
      problems,
      h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", onclick: () => dialog.close() }, "Cancel"), submit),
    ),
  );
}

// ---- One machine user and its secrets ---------------------------------------------------------

async function userPage(userId: string, mine: number): Promise<void> {
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  show(h("p", { class: "crumbs" }, h("a", { href: "#/" }, "← Machine users")), h("h1", { tabindex: -1 }, "Machine user"), body);
  const found = await attempt(() => users.getUserByID({ userId }), body);
  if (found?.user === undefined || mine !== rendering) return;
  const user = found.user;
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
    h("dt", {}, "Created"),
    h("dd", {}, time(user.details?.creationDate)),
  );
  if (user.type !== UserType.MACHINE) {
    body.replaceChildren(about, h("p", { class: "empty" }, "This is a human user: only machine users have client secrets."));
    return;
  }
  const secrets = h("div", { "aria-live": "polite" }, h("p", { class: "muted" }, "Loading…"));
  body.replaceChildren(
    about,
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
          h("button", { type: "button", onclick: () => secretDialog(user, false) }, "New secret"),
          h("button", { type: "button", class: "secondary", onclick: () => secretDialog(user, true) }, "Rotate"),
        ),
      ),
      h(
        "p",
        { class: "lead" },
        `A client exchanges the client id and a secret for an access token at ${TOKEN_PATH}. ` +
          "Secrets are stored only as hashes: each is shown once, when it is made. Rotate to replace them without downtime.",
      ),
      secrets,
    ),
  );
  const listed = await attempt(() => users.listSecrets({ userId }), secrets);
  if (listed === undefined || mine !== rendering) return;
  if (listed.secrets.length === 0) {
    secrets.replaceChildren(h("p", { class: "empty" }, "No secrets. Create one to let this user sign in with client credentials."));
    return;
  }
  secrets.replaceChildren(
    h(
      "table",
      {},
      h("caption", { class: "visually-hidden" }, `Client secrets of ${user.userName}`),
      h(
        "thead",
        {},
        h("tr", {}, ...["Secret", "Description", "Created", "Expires", "Last used", "State", ""].map((t) => h("th", { scope: "col" }, t))),
      ),
      h("tbody", {}, ...listed.secrets.map((secret) => secretRow(user, secret))),
    ),
  );
}

function secretLabel(secret: Secret): string {
  return secret.hint ? `msk_${secret.hint}…` : "(issued before the msk_ format)";
}

function secretRow(user: User, secret: Secret): HTMLTableRowElement {
  const expired = secret.state === SecretState.EXPIRED;
  return h(
    "tr",
    {},
    cell("Secret", h("code", {}, secretLabel(secret))),
    cell("Description", secret.description || "—"),
    cell("Created", time(secret.creationDate)),
    cell("Expires", time(secret.expirationDate, "Never")),
    cell("Last used", time(secret.lastUsed, "Never")),
    cell("State", expired ? badge("Expired", "off") : badge("Active", "on")),
    cell(
      "",
      h(
        "button",
        { type: "button", class: "danger", "aria-label": `Delete secret ${secretLabel(secret)}`, onclick: () => deleteDialog(user, secret) },
        "Delete",
      ),
    ),
  );
}

// The expiry a person picked: none, some days from now, or the end of a day they chose.
function expiryField(): { element: HTMLElement; value: () => Timestamp | undefined } {
  const choice = h(
    "select",
    {},
    h("option", { value: "" }, "No expiry (or the organisation's default)"),
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
  const description = h("input", { maxlength: 200, autocomplete: "off", placeholder: "e.g. where it is deployed" });
  const expiry = expiryField();
  const grace = h(
    "select",
    {},
    h("option", { value: String(3_600_000) }, "1 hour"),
    h("option", { value: String(DAY_MS), selected: true }, "1 day"),
    h("option", { value: String(7 * DAY_MS) }, "7 days"),
    h("option", { value: "0" }, "None: they stop working now"),
  );
  const problems = h("div", {});
  const submit = h("button", { type: "submit" }, rotate ? "Rotate" : "Create secret");
  const dialog = modal(
    rotate ? "Rotate the client secrets" : "New client secret",
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
          const fields = { userId: user.id, description: description.value.trim(), expirationDate: expiry.value() };
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
              showOnce(made.clientId, made.clientSecret, made.expirationDate);
            },
          );
        },
      },
      rotate && field("Grace period for the other secrets", grace),
      field("Description (optional)", description),
      expiry.element,
      problems,
      h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", onclick: () => dialog.close() }, "Cancel"), submit),
    ),
  );
}

function quoted(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

// The new secret, once. Closing the dialog empties its fields and removes it from the page, and
// nothing else holds the secret, so the browser lets it go.
function showOnce(clientId: string, clientSecret: string, expires: Timestamp | undefined): void {
  const curl =
    `curl -sS ${quoted(location.origin + TOKEN_PATH)} -d grant_type=client_credentials ` +
    `--data-urlencode ${quoted(`client_id=${clientId}`)} --data-urlencode ${quoted(`client_secret=${clientSecret}`)}`;
  const dialog = modal(
    "Copy the new client secret now",
    h(
      "p",
      { class: "warning" },
      h("strong", {}, "This secret will not be shown again."),
      " It is stored only as a hash. Put it in your secret store now; if it is lost, make a new one.",
    ),
    copyable("Client id", clientId),
    copyable("Client secret", clientSecret, 2),
    copyable("Get an access token with curl", curl, 5),
    h("p", {}, "Expires: ", time(expires, "never")),
    h("div", { class: "actions" }, h("button", { type: "button", class: "done" }, "Done: I have stored it")),
  );
  dialog.classList.add("once");
  // Let the secret go the moment the person closes the dialog (Done, or Escape's "cancel"), not a
  // task later when "close" fires and the dialog is removed.
  const forget = (): void => {
    for (const field of dialog.querySelectorAll<HTMLInputElement | HTMLTextAreaElement>("input, textarea")) field.value = "";
    dialog.replaceChildren();
  };
  dialog.querySelector<HTMLButtonElement>("button.done")?.addEventListener("click", () => {
    forget();
    dialog.close();
  });
  dialog.addEventListener("cancel", forget);
  dialog.addEventListener("close", () => {
    forget();
    document.getElementById("secrets-title")?.focus();
  });
}

function deleteDialog(user: User, secret: Secret): void {
  const problems = h("div", {});
  const confirm = h("button", { type: "button", class: "danger" }, "Delete secret");
  const cancel = h("button", { type: "button", class: "secondary", autofocus: true }, "Cancel");
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

// A problem that is not the API's (a bug here): shown, never swallowed.
window.addEventListener("unhandledrejection", (event) => {
  const problem: Problem = problemOf(event.reason instanceof ConnectError ? event.reason : new ConnectError(String(event.reason), Code.Internal));
  main.prepend(problemBox(problem));
});

window.addEventListener("hashchange", () => void route());
void route();
