// Strings come from JSON resource files, one per language. Elements name
// their string with data-i18n (text), data-i18n-label (aria-label) and
// data-i18n-placeholder; a language change (desktop.language) re-applies
// them in every open window.
import en from "./i18n/en.json";
import fi from "./i18n/fi.json";
import { onEvent } from "./engine";

export type Key = keyof typeof en;
const tables: Record<string, Record<Key, string>> = { en, fi };
let current: Record<Key, string> = en;

export function t(key: Key | string, vars: Record<string, string | number> = {}): string {
  let s = (current as Record<string, string>)[key] ?? (en as Record<string, string>)[key] ?? key;
  for (const [k, v] of Object.entries(vars)) s = s.replaceAll(`{${k}}`, String(v));
  return s;
}

export function apply(root: ParentNode = document): void {
  root.querySelectorAll<HTMLElement>("[data-i18n]").forEach((el) => {
    el.textContent = t(el.dataset.i18n!);
  });
  root.querySelectorAll<HTMLElement>("[data-i18n-label]").forEach((el) => {
    el.setAttribute("aria-label", t(el.dataset.i18nLabel!));
  });
  root.querySelectorAll<HTMLInputElement>("[data-i18n-placeholder]").forEach((el) => {
    el.placeholder = t(el.dataset.i18nPlaceholder!);
  });
  const title = document.querySelector<HTMLElement>("[data-i18n-title]");
  if (title) document.title = t(title.dataset.i18nTitle!);
}

export function setLanguage(lang: string): void {
  current = tables[lang] ?? en;
  document.documentElement.lang = tables[lang] ? lang : "en";
  apply();
}

/** Starts in `lang` and follows desktop.language changes. */
export function follow(lang: string, onChange: () => void = () => {}): void {
  setLanguage(lang);
  void onEvent("config-changed", (c) => {
    if (c.key === "desktop.language" && typeof c.value === "string") {
      setLanguage(c.value);
      onChange();
    }
  });
}
