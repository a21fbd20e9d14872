// The course's one addition to the theme's scripts.
// Opened from disk (file://), browsers refuse the fetch() with which Sphinx's search shows a line of
// each result's text; the results are then listed without it, rather than with an error.
if (window.location.protocol === "file:") {
  DOCUMENTATION_OPTIONS.SHOW_SEARCH_SUMMARY = false;
}
