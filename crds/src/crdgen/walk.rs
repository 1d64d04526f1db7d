//! A walk over every schema nested in a CRD's OpenAPI schema, for the generator's rewrites.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool, JSONSchemaPropsOrStringArray,
};

/// Calls `visit` on `schema` and then on every schema nested in it, at any depth: properties,
/// items, additional properties and items, the `allOf`/`anyOf`/`oneOf`/`not` branches, pattern
/// properties, definitions and dependencies. A rewrite applied through this walk therefore
/// reaches every description and format, wherever schemars or k8s-openapi put them.
pub(super) fn each_schema_mut(
    schema: &mut JSONSchemaProps,
    visit: &mut impl FnMut(&mut JSONSchemaProps),
) {
    visit(schema);
    let maps = [
        &mut schema.properties,
        &mut schema.pattern_properties,
        &mut schema.definitions,
    ];
    for child in maps.into_iter().flatten().flat_map(|m| m.values_mut()) {
        each_schema_mut(child, visit);
    }
    let lists = [&mut schema.all_of, &mut schema.any_of, &mut schema.one_of];
    for child in lists.into_iter().flatten().flatten() {
        each_schema_mut(child, visit);
    }
    if let Some(not) = schema.not.as_deref_mut() {
        each_schema_mut(not, visit);
    }
    match &mut schema.items {
        Some(JSONSchemaPropsOrArray::Schema(item)) => each_schema_mut(item, visit),
        Some(JSONSchemaPropsOrArray::Schemas(items)) => {
            for item in items {
                each_schema_mut(item, visit);
            }
        }
        None => {}
    }
    for extra in [
        &mut schema.additional_properties,
        &mut schema.additional_items,
    ] {
        if let Some(JSONSchemaPropsOrBool::Schema(child)) = extra {
            each_schema_mut(child, visit);
        }
    }
    for dependency in schema.dependencies.iter_mut().flat_map(|d| d.values_mut()) {
        if let JSONSchemaPropsOrStringArray::Schema(child) = dependency {
            each_schema_mut(child, visit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn described(text: &str) -> JSONSchemaProps {
        JSONSchemaProps {
            description: Some(text.to_owned()),
            ..JSONSchemaProps::default()
        }
    }

    /// Every kind of nesting is visited, each schema once.
    #[test]
    fn visits_every_nested_schema() {
        let mut root = JSONSchemaProps {
            description: Some("root".to_owned()),
            properties: Some([("p".to_owned(), described("property"))].into()),
            pattern_properties: Some([("^x".to_owned(), described("pattern"))].into()),
            definitions: Some([("d".to_owned(), described("definition"))].into()),
            all_of: Some(vec![described("allOf")]),
            any_of: Some(vec![described("anyOf")]),
            one_of: Some(vec![described("oneOf")]),
            not: Some(Box::new(described("not"))),
            items: Some(JSONSchemaPropsOrArray::Schemas(vec![
                described("item 1"),
                JSONSchemaProps {
                    items: Some(JSONSchemaPropsOrArray::Schema(Box::new(described(
                        "nested item",
                    )))),
                    ..described("item 2")
                },
            ])),
            additional_properties: Some(JSONSchemaPropsOrBool::Schema(Box::new(described(
                "additionalProperties",
            )))),
            additional_items: Some(JSONSchemaPropsOrBool::Bool(true)),
            dependencies: Some(
                [
                    (
                        "a".to_owned(),
                        JSONSchemaPropsOrStringArray::Schema(Box::new(described("dependency"))),
                    ),
                    (
                        "b".to_owned(),
                        JSONSchemaPropsOrStringArray::Strings(vec!["c".to_owned()]),
                    ),
                ]
                .into(),
            ),
            ..JSONSchemaProps::default()
        };
        let mut seen = Vec::new();
        each_schema_mut(&mut root, &mut |s| {
            seen.push(s.description.clone().unwrap_or_default());
        });
        seen.sort();
        let mut expected = [
            "root",
            "property",
            "pattern",
            "definition",
            "allOf",
            "anyOf",
            "oneOf",
            "not",
            "item 1",
            "item 2",
            "nested item",
            "additionalProperties",
            "dependency",
        ];
        expected.sort_unstable();
        assert_eq!(seen, expected);
    }
}
