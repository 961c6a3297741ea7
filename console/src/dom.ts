// Small helpers to build the page with the DOM itself: no template strings are parsed as HTML, so a
// user name or a description can never become markup.
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { Problem } from "./api";

type Child = Node | string | null | undefined | false;
type Props = Record<string, string | boolean | number | EventListener | undefined>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === false) continue;
    if (typeof value === "function") element.addEventListener(name.slice(2), value);
    else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, String(value));
  }
  for (const child of children) if (child !== null && child !== undefined && child !== false) element.append(child);
  return element;
}

const LOCAL = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const UTC = new Intl.DateTimeFormat("en-GB", { dateStyle: "medium", timeStyle: "long", timeZone: "UTC" });

// A time in the browser's time zone; the same in UTC on hover.
export function time(at: Timestamp | undefined, none = "—"): Node {
  if (!at) return document.createTextNode(none);
  const date = timestampDate(at);
  return h("time", { datetime: date.toISOString(), title: UTC.format(date) }, LOCAL.format(date));
}

// An error as a person reads it: what happened, what was wrong with which field, and the
// service's own message and reason for whoever debugs it.
export function problemBox(problem: Problem): HTMLElement {
  return h(
    "div",
    { class: "problem", role: "alert" },
    h("p", { class: "problem-words" }, problem.words),
    problem.fields.length > 0 &&
      h("ul", {}, ...problem.fields.map((f) => h("li", {}, h("code", {}, f.field), ` ${f.description}`))),
    h("p", { class: "problem-detail" }, `${problem.message} (${problem.reason})`),
  );
}

// Writes text to the clipboard; where the page may not (an http:// address other than this
// machine's), selects it for the person to copy.
export async function copy(source: HTMLInputElement | HTMLTextAreaElement, button: HTMLButtonElement): Promise<void> {
  const label = button.textContent;
  try {
    await navigator.clipboard.writeText(source.value);
    button.textContent = "Copied";
  } catch {
    source.select();
    button.textContent = "Press Ctrl+C";
  }
  setTimeout(() => {
    button.textContent = label;
  }, 2000);
}

// A control with its label (by `for`: a label around a select would take its value into its name),
// and a hint that screen readers read with it.
let fields = 0;
export function field(label: string, control: HTMLElement, hint = ""): HTMLElement {
  const id = `field-${++fields}`;
  control.id = id;
  const wrapper = h("div", { class: "field" }, h("label", { class: "label", for: id }, label), control);
  if (hint) {
    control.setAttribute("aria-describedby", `${id}-hint`);
    wrapper.append(h("p", { class: "hint", id: `${id}-hint` }, hint));
  }
  return wrapper;
}

// A field whose value can be read, selected and copied, but not changed; `rows` > 1 wraps it.
export function copyable(label: string, value: string, rows = 1): HTMLElement {
  const box =
    rows > 1
    ? h("textarea", { readonly: true, rows, spellcheck: "false", class: "mono" })
    : h("input", { readonly: true, spellcheck: "false", class: "mono" });
  box.value = value;
  const button = h("button", { type: "button", class: "secondary", "aria-label": `Copy ${label.toLowerCase()}` }, "Copy");
  button.addEventListener("click", () => void copy(box, button));
  return h("div", { class: "copyable" }, field(label, box), button);
}

// A modal dialog: focus is kept inside, Escape closes it, and closing removes it from the page.
export function modal(title: string, ...body: Child[]): HTMLDialogElement {
  const dialog = h("dialog", { "aria-labelledby": "dialog-title" }, h("h2", { id: "dialog-title" }, title), ...body);
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  return dialog;
}

// Says something to screen readers and shows it briefly.
export function announce(text: string): void {
  const status = document.getElementById("status");
  if (!status) return;
  status.textContent = text;
  setTimeout(() => {
    if (status.textContent === text) status.textContent = "";
  }, 3000);
}
