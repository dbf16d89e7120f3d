/* global document, window, HTMLFormElement */
// snapfork web UI: the one script, loaded by every page (the Content-Security-Policy allows no
// other). Asks before a destructive form is sent; every page works without it.
document.addEventListener('submit', (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement)) return;
  const question = form.dataset.confirm;
  if (question && !window.confirm(question)) event.preventDefault();
});
