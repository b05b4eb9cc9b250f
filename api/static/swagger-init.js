// The API docs page (/schema): Swagger UI over the served spec. A file, not an inline script, so that the page's
// Content-Security-Policy can allow only this origin's scripts (api/middleware.py PAGE_CSP).
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/schema/openapi.json",
    dom_id: "#swagger-container",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  });
});
