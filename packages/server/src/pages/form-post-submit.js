// Baton: submits the response form of a response_mode=form_post page (OAuth 2.0 Form Post
// Response Mode). Served as a same-origin file because the pages' CSP forbids inline script;
// without script the page shows a Continue button that does the same.
document.addEventListener('DOMContentLoaded', function () {
  var form = document.getElementById('response');
  if (form) form.submit();
});
