// The emulator page's runtime: a module registry behind `window.require` and a small
// Backbone-style event / model / collection system, the shapes WhatsApp Web exposes.
(function () {
  'use strict';

  // ---- events -----------------------------------------------------------------------
  function splitNames(names) {
    return String(names || '').split(/\s+/).filter(Boolean);
  }

  var Events = {
    on: function (names, callback, context) {
      if (typeof callback !== 'function') return this;
      var events = this._events || (this._events = Object.create(null));
      splitNames(names).forEach(function (name) {
        (events[name] || (events[name] = [])).push({ callback: callback, context: context, once: false });
      });
      return this;
    },
    once: function (names, callback, context) {
      if (typeof callback !== 'function') return this;
      var events = this._events || (this._events = Object.create(null));
      splitNames(names).forEach(function (name) {
        (events[name] || (events[name] = [])).push({ callback: callback, context: context, once: true });
      });
      return this;
    },
    off: function (names, callback, context) {
      var events = this._events;
      if (!events) return this;
      var list = names ? splitNames(names) : Object.keys(events);
      list.forEach(function (name) {
        var handlers = events[name];
        if (!handlers) return;
        var kept = handlers.filter(function (h) {
          return (callback && h.callback !== callback) || (context && h.context !== context);
        });
        if (kept.length) events[name] = kept;
        else delete events[name];
      });
      return this;
    },
    trigger: function (name) {
      var events = this._events;
      if (!events) return this;
      var args = Array.prototype.slice.call(arguments, 1);
      var self = this;
      splitNames(name).forEach(function (n) {
        fire(self, events, n, args);
        if (n !== 'all') fire(self, events, 'all', [n].concat(args));
      });
      return this;
    },
    listenTo: function (other, names, callback) {
      other.on(names, callback, this);
      return this;
    },
    stopListening: function (other, names, callback) {
      if (other) other.off(names, callback, this);
      return this;
    }
  };
  Events.emit = Events.trigger;
  Events.bind = Events.on;
  Events.unbind = Events.off;
  Events.removeListener = Events.off;
  Events.addListener = Events.on;

  function fire(self, events, name, args) {
    var handlers = events[name];
    if (!handlers) return;
    handlers.slice().forEach(function (h) {
      if (h.once) {
        var current = events[name];
        if (current) {
          var i = current.indexOf(h);
          if (i >= 0) current.splice(i, 1);
          if (!current.length) delete events[name];
        }
      }
      try {
        h.callback.apply(h.context || self, args);
      } catch (e) {
        setTimeout(function () { throw e; });
      }
    });
  }

  function EventEmitter() {}
  Object.assign(EventEmitter.prototype, Events);

  // ---- models -----------------------------------------------------------------------
  function keyOf(id) {
    if (id == null) return undefined;
    if (typeof id === 'object') {
      if (id._serialized != null) return String(id._serialized);
      if (id.id != null && typeof id.id === 'object') return keyOf(id.id);
      return String(id.toString());
    }
    return String(id);
  }

  function defineAccessor(model, name) {
    if (name in model) return;
    Object.defineProperty(model, name, {
      configurable: true,
      enumerable: true,
      get: function () { return model.attributes[name]; },
      set: function (v) { model.set(name, v); }
    });
  }

  function Model(attributes, options) {
    this.attributes = Object.create(null);
    this.collection = options && options.collection;
    this.cid = 'c' + (++Model._cid);
    var defaults = typeof this.defaults === 'function' ? this.defaults() : this.defaults;
    var attrs = Object.assign({}, defaults || {}, attributes || {});
    this.set(attrs, { silent: true });
    if (typeof this.initialize === 'function') this.initialize.apply(this, arguments);
  }
  Model._cid = 0;
  Object.assign(Model.prototype, Events, {
    idAttribute: 'id',
    get: function (key) { return this.attributes[key]; },
    has: function (key) { return this.attributes[key] != null; },
    set: function (key, value, options) {
      var attrs;
      if (key == null) return this;
      if (typeof key === 'object') { attrs = key; options = value; }
      else { attrs = {}; attrs[key] = value; }
      options = options || {};
      var changed = [];
      for (var k in attrs) {
        var prev = this.attributes[k];
        defineAccessor(this, k);
        if (prev !== attrs[k]) {
          this.attributes[k] = attrs[k];
          changed.push([k, attrs[k], prev]);
        }
      }
      if (!options.silent && changed.length) {
        var self = this;
        changed.forEach(function (c) { self.trigger('change:' + c[0], self, c[1], c[2]); });
        this.trigger('change', this, options);
      }
      return this;
    },
    unset: function (key) { return this.set(key, undefined); },
    toJSON: function () { return Object.assign({}, this.attributes); },
    serialize: function () { return this.toJSON(); },
    isNew: function () { return this.id == null; }
  });

  Model.extend = function (protoProps, staticProps) { return extend(this, protoProps, staticProps); };

  function extend(parent, protoProps, staticProps) {
    var child = protoProps && Object.prototype.hasOwnProperty.call(protoProps, 'constructor')
      ? protoProps.constructor
      : function () { return parent.apply(this, arguments); };
    Object.assign(child, parent, staticProps || {});
    child.prototype = Object.create(parent.prototype);
    Object.assign(child.prototype, protoProps || {});
    child.prototype.constructor = child;
    return child;
  }

  // ---- collections --------------------------------------------------------------------
  function Collection(models, options) {
    this.models = [];
    this._byId = Object.create(null);
    if (options && options.model) this.model = options.model;
    if (typeof this.initialize === 'function') this.initialize.apply(this, arguments);
    if (models) this.add(models, { silent: true });
  }
  Object.assign(Collection.prototype, Events, {
    model: Model,
    get: function (id) {
      if (id == null) return undefined;
      if (id instanceof Model && id.collection === this) return id;
      return this._byId[keyOf(id)];
    },
    has: function (id) { return this.get(id) !== undefined; },
    at: function (i) { return this.models[i < 0 ? this.models.length + i : i]; },
    add: function (items, options) {
      options = options || {};
      var single = !Array.isArray(items);
      var list = single ? [items] : items;
      var self = this;
      var out = list.map(function (item) {
        var model = item instanceof Model ? item : new self.model(item, { collection: self });
        var key = keyOf(model.id);
        var existing = key !== undefined ? self._byId[key] : undefined;
        if (existing) {
          if (options.merge && existing !== model) existing.set(model.attributes);
          return existing;
        }
        if (!model.collection) model.collection = self;
        if (key !== undefined) self._byId[key] = model;
        self.models.push(model);
        model.on('all', self._onModelEvent, self);
        if (!options.silent) model.trigger('add', model, self, options);
        return model;
      });
      return single ? out[0] : out;
    },
    remove: function (items, options) {
      options = options || {};
      var single = !Array.isArray(items);
      var list = single ? [items] : items;
      var self = this;
      var out = list.map(function (item) {
        var model = self.get(item);
        if (!model) return undefined;
        var i = self.models.indexOf(model);
        if (i >= 0) self.models.splice(i, 1);
        delete self._byId[keyOf(model.id)];
        if (!options.silent) model.trigger('remove', model, self, options);
        if (model.collection === self) delete model.collection;
        model.off('all', self._onModelEvent, self);
        return model;
      });
      return single ? out[0] : out;
    },
    reset: function () {
      var self = this;
      this.models.slice().forEach(function (m) { self.remove(m, { silent: true }); });
      this.trigger('reset', this);
    },
    _onModelEvent: function (event, model, collection) {
      if ((event === 'add' || event === 'remove') && collection !== this) return;
      this.trigger.apply(this, arguments);
    },
    getModelsArray: function () { return this.models.slice(); },
    toArray: function () { return this.models.slice(); },
    forEach: function (f, ctx) { return this.models.forEach(f, ctx); },
    map: function (f, ctx) { return this.models.map(f, ctx); },
    filter: function (f, ctx) { return this.models.filter(f, ctx); },
    find: function (f, ctx) { return this.models.find(f, ctx); },
    where: function (attrs) {
      return this.models.filter(function (m) {
        return Object.keys(attrs).every(function (k) { return m.get(k) === attrs[k]; });
      });
    },
    serialize: function () { return this.models.map(function (m) { return m.serialize(); }); },
    toJSON: function () { return this.serialize(); }
  });
  Object.defineProperty(Collection.prototype, 'length', {
    get: function () { return this.models.length; }
  });
  Collection.extend = function (protoProps, staticProps) { return extend(this, protoProps, staticProps); };

  // ---- module registry ----------------------------------------------------------------
  var registry = Object.create(null);

  function define(name, factory) {
    registry[name] = { factory: factory, loaded: false, exports: undefined };
  }

  function require(name) {
    var entry = registry[name];
    if (!entry) {
      var err = new Error('Requiring unknown module "' + name + '"');
      err.name = 'Error';
      throw err;
    }
    if (!entry.loaded) {
      entry.loaded = true;
      entry.exports = entry.factory(require);
    }
    return entry.exports;
  }

  // The real site's loader is `__d(name, deps, factory)`; ours takes only a factory.
  window.__d = function (name, depsOrFactory, maybeFactory) {
    define(name, typeof depsOrFactory === 'function' ? depsOrFactory : maybeFactory);
  };
  window.require = require;

  define('WAWebBackboneRuntime', function () {
    return { Events: Events, EventEmitter: EventEmitter, Model: Model, Collection: Collection, keyOf: keyOf };
  });
})();
