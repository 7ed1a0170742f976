// The properties the panels break down by, as the server's read side declares them
// (queries/properties.py), given with the session: each one's column heading and the
// key its breakdown rows carry. The panels name a property; the rest comes from here.
let registry = {};

export function setProperties(properties) {
  registry = properties ?? {};
}

export function propertyLabel(name) {
  return registry[name]?.label ?? name;
}

export function propertyKey(name) {
  return registry[name]?.key ?? name.split(':').pop();
}
