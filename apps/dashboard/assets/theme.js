// Runs before first paint (classic script in <head>) so the stored or preferred theme never flashes.
(function () {
  var t = null;
  try { t = localStorage.getItem('hb-theme'); } catch (e) { /* storage blocked */ }
  if (t !== 'dark' && t !== 'light') {
    t = window.matchMedia && matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
  }
  document.documentElement.dataset.theme = t;
})();
