// Every mutation takes one `input` object; the arguments it took before stay one release as deprecated
// aliases of input's fields. This merges them into `input` before any resolver runs, so resolvers read
// `input` only, and refuses at boot a schema where an alias has drifted from its field.
import { MapperKind, mapSchema } from '@graphql-tools/utils';
import {
  defaultFieldResolver,
  getNullableType,
  isInputObjectType,
  isNonNullType,
  type GraphQLFieldConfig,
  type GraphQLInputObjectType,
  type GraphQLSchema,
} from 'graphql';
import { BadUserInputError } from './errors.js';

const INPUT_ARGUMENT = 'input';

/** A mutation's deprecated arguments, checked against the fields of its input type. */
function legacyArgumentsOf(
  mutation: string,
  field: GraphQLFieldConfig<unknown, unknown>,
): { inputType: GraphQLInputObjectType; legacy: string[] } | undefined {
  const args = Object.entries(field.args ?? {});
  if (args.length === 0) return undefined;
  const inputArg = field.args?.[INPUT_ARGUMENT];
  const inputType = inputArg && getNullableType(inputArg.type);
  if (!inputType || !isInputObjectType(inputType)) {
    throw new Error(`Mutation.${mutation} takes arguments, so it must take them in an input object named \`input\``);
  }
  const inputFields = inputType.getFields();
  const legacy: string[] = [];
  for (const [name, arg] of args) {
    if (name === INPUT_ARGUMENT) continue;
    const where = `Mutation.${mutation}(${name})`;
    const inputField = inputFields[name];
    if (!inputField) throw new Error(`${where} has no field of the same name in ${inputType.name}`);
    // The alias is nullable (it may be left out for input); the field may be either, so compare without the outer `!`.
    if (String(getNullableType(arg.type)) !== String(getNullableType(inputField.type))) {
      throw new Error(`${where} is ${String(arg.type)} but ${inputType.name}.${name} is ${String(inputField.type)}`);
    }
    if (isNonNullType(arg.type) || !arg.deprecationReason) {
      throw new Error(`${where} must be nullable and @deprecated in favour of input.${name}`);
    }
    legacy.push(name);
  }
  return legacy.length ? { inputType, legacy } : undefined;
}

/** Absent and null both mean "not given" for an old argument and its input field: none of them gives null a meaning. */
function isGiven(value: unknown): boolean {
  return value !== undefined && value !== null;
}

function mergeInput(
  inputType: GraphQLInputObjectType,
  legacy: readonly string[],
  args: Record<string, unknown>,
): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...((args[INPUT_ARGUMENT] as Record<string, unknown> | null) ?? {}) };
  for (const name of legacy) {
    if (!isGiven(args[name])) continue;
    if (isGiven(merged[name])) {
      throw new BadUserInputError(
        `Give ${name} once: in input (the deprecated argument \`${name}\` is its old name)`,
        `${INPUT_ARGUMENT}.${name}`,
      );
    }
    merged[name] = args[name];
  }
  for (const field of Object.values(inputType.getFields())) {
    if (isGiven(merged[field.name])) continue;
    // Only reached for fields given through no input object at all (GraphQL validates a given one).
    if (isNonNullType(field.type)) {
      throw new BadUserInputError(`input.${field.name} is required`, `${INPUT_ARGUMENT}.${field.name}`);
    }
    if (field.defaultValue !== undefined && !(field.name in merged)) merged[field.name] = field.defaultValue;
  }
  return merged;
}

/**
 * Checks every mutation's deprecated arguments against its input type (throws on drift) and has each such
 * mutation's resolver called with `{ input }` alone, merged from both forms.
 */
export function withMergedMutationInputs(schema: GraphQLSchema): GraphQLSchema {
  const mutationType = schema.getMutationType()?.name;
  return mapSchema(schema, {
    [MapperKind.OBJECT_FIELD]: (field, fieldName, typeName) => {
      if (typeName !== mutationType) return field;
      const shape = legacyArgumentsOf(fieldName, field);
      if (!shape) return field;
      const resolve = field.resolve ?? defaultFieldResolver;
      return {
        ...field,
        resolve(source, args: Record<string, unknown>, ctx, info) {
          const input = mergeInput(shape.inputType, shape.legacy, args);
          return resolve(source, { [INPUT_ARGUMENT]: input }, ctx, info);
        },
      };
    },
  });
}

/** The merged input of a mutation resolver's arguments (always present once withMergedMutationInputs ran). */
export function mutationInput<Args extends { input?: unknown }>(args: Args): NonNullable<Args['input']> {
  if (!isGiven(args.input)) throw new Error('Mutation input was not merged: build the schema with buildSchema()');
  return args.input as NonNullable<Args['input']>;
}

/**
 * A field that is nullable in its input type only because its deprecated argument may carry it instead
 * (e.g. UpdateModelInput.slug): required once merged.
 */
export function requiredInputField<Input, Name extends keyof Input & string>(
  input: Input,
  name: Name,
): NonNullable<Input[Name]> {
  const value = input[name];
  if (!isGiven(value)) throw new BadUserInputError(`input.${name} is required`, `${INPUT_ARGUMENT}.${name}`);
  return value as NonNullable<Input[Name]>;
}
