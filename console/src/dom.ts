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

const LOCAL = new Intl.DateTimeFormat(undefined, {
  year: "numeric",
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  timeZoneName: "short",
});
const UTC = new Intl.DateTimeFormat("en-GB", { dateStyle: "medium", timeStyle: "long", timeZone: "UTC" });

// A time in the browser's time zone, with the zone's name; the same in UTC on hover.
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
    { class: "problem", role: "alert", tabindex: -1 },
    h("p", { class: "problem-words" }, problem.words),
    problem.fields.length > 0 &&
      h("ul", {}, ...problem.fields.map((f) => h("li", {}, h("code", {}, f.field), ` ${f.description}`))),
    h("p", { class: "problem-detail" }, `${problem.message} (${problem.reason})`),
  );
}

// A problem of the console's own (a sign-in refused, text too long): the same box, without the
// service's detail.
export function problemText(words: string): HTMLElement {
  return h("div", { class: "problem", role: "alert", tabindex: -1 }, h("p", { class: "problem-words" }, words));
}

// Puts a problem where it belongs and moves focus to it, so that keyboard and screen-reader users
// hear it and go on from there.
export function showProblem(where: HTMLElement, box: HTMLElement): void {
  where.replaceChildren(box);
  box.focus();
}

// Writes text to the clipboard; where the page may not (an http:// address other than this
// machine's), selects it for the person to copy.
// `shown` is the button's visible word; the rest of its name (what it copies) is for screen readers.
export async function copy(source: HTMLInputElement | HTMLTextAreaElement, shown: HTMLElement): Promise<void> {
  const label = shown.textContent;
  try {
    await navigator.clipboard.writeText(source.value);
    shown.textContent = "Copied";
  } catch {
    source.select();
    shown.textContent = "Press Ctrl+C";
  }
  setTimeout(() => {
    shown.textContent = label;
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
  // The name says what is copied and holds the visible word, as WCAG 2.5.3 asks.
  const shown = h("span", {}, "Copy");
  const button = h(
    "button",
    { type: "button", class: "secondary copy" },
    shown,
    h("span", { class: "visually-hidden" }, ` ${label.toLowerCase()}`),
  );
  button.addEventListener("click", () => void copy(box, shown));
  return h("div", { class: "copyable" }, field(label, box), button);
}

// A text field that shows how much of its limit is used as the person types, and says when it is
// over (nothing is cut: the person decides what to drop). `over()` tells the form to refuse.
export function limited(
  control: HTMLInputElement | HTMLTextAreaElement,
  limit: number,
): { count: HTMLElement; over: () => boolean } {
  const count = h("p", { class: "count", "aria-live": "polite" });
  const update = (): void => {
    const length = [...control.value].length;
    const over = length > limit;
    count.textContent = over ? `${length} of ${limit} characters: ${length - limit} too many` : `${length} of ${limit} characters`;
    count.classList.toggle("over", over);
    control.setAttribute("aria-invalid", String(over));
  };
  control.addEventListener("input", update);
  update();
  return { count, over: () => [...control.value].length > limit };
}

// A labelled field with its limit (see limited); the count is read with the field.
export function limitedField(
  label: string,
  control: HTMLInputElement | HTMLTextAreaElement,
  limit: number,
  hint = "",
): { element: HTMLElement; over: () => boolean; label: string; control: HTMLElement } {
  const { count, over } = limited(control, limit);
  const element = field(label, control, hint);
  count.id = `${control.id}-count`;
  element.append(count);
  control.setAttribute("aria-describedby", `${control.getAttribute("aria-describedby") ?? ""} ${count.id}`.trim());
  return { element, over, label, control };
}

// Refuses a form whose text is over its limit: says which field, and moves focus to it.
export function overLimit(
  problems: HTMLElement,
  fields: { over: () => boolean; label: string; control: HTMLElement }[],
): boolean {
  const first = fields.find((f) => f.over());
  if (!first) return false;
  problems.replaceChildren(problemText(`“${first.label}” is longer than the service accepts: shorten it, then try again.`));
  first.control.focus();
  return true;
}

// A modal dialog: focus is kept inside, Escape closes it, and closing removes it from the page.
export function modal(title: string, ...body: Child[]): HTMLDialogElement {
  const dialog = h("dialog", { "aria-labelledby": "dialog-title" }, h("h2", { id: "dialog-title" }, title), ...body);
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  return dialog;
}

// Every open dialog, emptied and gone at once: a session that ends takes them with it.
export function closeAllDialogs(): void {
  for (const dialog of document.querySelectorAll("dialog")) {
    for (const f of dialog.querySelectorAll<HTMLInputElement | HTMLTextAreaElement>("input, textarea")) f.value = "";
    dialog.replaceChildren();
    dialog.close();
    dialog.remove();
  }
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
