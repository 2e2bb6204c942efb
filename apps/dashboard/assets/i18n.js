// Tiny i18n: each language is one file, i18n/<code>.json, whose "lang.name" is its own name.
// The server lists the embedded files at i18n/index.json, so adding a language = adding a file.
const base = new URL('./i18n/', import.meta.url);
let dict = {};
let fallback = {};
let lang = 'en';
let manifest = [{ code: 'en', name: 'English' }];

async function load(code) {
  const res = await fetch(new URL(`${code}.json`, base));
  if (!res.ok) throw new Error(`i18n ${code}: HTTP ${res.status}`);
  return res.json();
}

function storedLang() {
  try { return localStorage.getItem('hb-lang'); } catch { return null; }
}

export function languages() { return manifest; }
export function currentLang() { return lang; }

/** Picks the stored language, else the first browser language we have, else English. */
export async function initI18n() {
  try {
    const m = await (await fetch(new URL('index.json', base))).json();
    if (Array.isArray(m) && m.length) manifest = m;
  } catch { /* keep English only */ }
  try { fallback = await load('en'); } catch { fallback = {}; }
  const codes = manifest.map((l) => l.code);
  const wanted = [storedLang(), ...(navigator.languages || [navigator.language])].filter(Boolean);
  let pick = 'en';
  for (const w of wanted) {
    const exact = codes.find((c) => c.toLowerCase() === w.toLowerCase());
    const prefix = codes.find((c) => c.toLowerCase() === w.toLowerCase().split('-')[0]);
    if (exact || prefix) { pick = exact || prefix; break; }
  }
  await setLang(pick, false);
}

export async function setLang(code, remember = true) {
  try {
    dict = code === 'en' ? fallback : await load(code);
    lang = code;
  } catch {
    dict = fallback;
    lang = 'en';
  }
  if (remember) { try { localStorage.setItem('hb-lang', lang); } catch { /* ignore */ } }
  document.documentElement.lang = lang;
  applyStatic();
}

/** Translates `key`, replacing `{name}` placeholders with `vars.name` (as plain text). */
export function t(key, vars) {
  let s = dict[key] ?? fallback[key] ?? key;
  if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (vars[k] ?? m));
  return s;
}

/** Refreshes every element marked with data-i18n / data-i18n-placeholder / data-i18n-title. */
export function applyStatic(root = document) {
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-placeholder]')) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of root.querySelectorAll('[data-i18n-title]')) el.title = t(el.dataset.i18nTitle);
}
