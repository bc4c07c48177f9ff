/* global window, RED */
/* Shared by the edge AI editor files (served by Node-RED at resources/<package>/). */
window.edgeAiEditor = window.edgeAiEditor || {
  /**
   * Makes every validator of node type `type` answer with a reason from its catalog
   * (`<type>.validation.<field>`, else `<type>.validation.invalid`), which Node-RED 3+ shows at
   * the field, as core's nodes do. A (v, opt) validator may return that string.
   */
  explainValidators: function (type) {
    var def = RED.nodes.getType(type);
    if (!def) return;
    Object.keys(def.defaults).forEach(function (field) {
      var test = def.defaults[field].validate;
      if (typeof test !== 'function') return;
      def.defaults[field].validate = function (v, opt) {
        var ok = test.call(this, v, opt);
        if (ok === true || (ok && typeof ok !== 'string' && !Array.isArray(ok))) return true;
        var key = type + '.validation.' + field;
        var reason = def._(key);
        return reason !== key ? reason : def._(type + '.validation.invalid', { field: field });
      };
    });
  },
};
