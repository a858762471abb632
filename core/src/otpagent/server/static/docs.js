// Renders /openapi.json as a browsable page: operations, parameters, bodies, responses.
(function () {
  "use strict";
  function el(tag, cls, txt) { var e = document.createElement(tag); if (cls) { e.className = cls; } if (txt !== undefined) { e.textContent = txt; } return e; }
  function resolve(spec, schema) {
    if (schema && schema.$ref) { return spec.components.schemas[schema.$ref.split("/").pop()]; }
    return schema;
  }
  function json(value) { return el("pre", "", JSON.stringify(value, null, 2)); }
  fetch("/openapi.json").then(function (r) { return r.json(); }).then(function (spec) {
    var root = document.getElementById("docs");
    root.textContent = "";
    root.appendChild(el("p", "muted", spec.info.description));
    Object.keys(spec.paths).forEach(function (path) {
      var item = spec.paths[path];
      Object.keys(item).forEach(function (method) {
        var op = item[method];
        var box = el("details", "op");
        var summary = el("summary");
        summary.appendChild(el("span", "method " + method, method.toUpperCase()));
        summary.appendChild(document.createTextNode(path + " — " + op.summary));
        if (op.security && op.security.length) { summary.appendChild(el("span", "lock", "API key")); }
        box.appendChild(summary);
        (op.parameters || []).forEach(function (p) {
          box.appendChild(el("p", "", p["in"] + " parameter " + p.name + (p.required ? " (required)" : "") + (p.description ? ": " + p.description : "")));
        });
        if (op.requestBody) {
          box.appendChild(el("h3", "", "Request body"));
          var schema = op.requestBody.content["application/json"].schema;
          box.appendChild(json(schema.oneOf ? schema.oneOf.map(function (s) { return resolve(spec, s); }) : resolve(spec, schema)));
        }
        box.appendChild(el("h3", "", "Responses"));
        Object.keys(op.responses).forEach(function (code) {
          box.appendChild(el("p", "", code + " — " + op.responses[code].description));
        });
        root.appendChild(box);
      });
    });
  });
}());
