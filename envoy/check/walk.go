package main

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// allValidator is the method that protoc-gen-validate generates on every message.
type allValidator interface {
	ValidateAll() error
}

// multiError is the error type that ValidateAll returns when it finds violations.
type multiError interface {
	AllErrors() []error
}

// validateTree runs the protoc-gen-validate rules on root and on the content of every Any
// below it, and reports deprecated fields, deprecated enum values and negative durations.
//
// The generated ValidateAll recurses into embedded messages but not into the content of a
// google.protobuf.Any, so without this walk the rules inside every typed_config (the HTTP
// connection manager, ext_authz, TLS contexts) would never run.
func validateTree(root proto.Message) ([]string, error) {
	var violations []string
	violations = append(violations, runValidateAll(root.ProtoReflect(), "")...)
	err := walkMessage(root.ProtoReflect(), "", &violations)
	return violations, err
}

func runValidateAll(message protoreflect.Message, path string) []string {
	validator, ok := message.Interface().(allValidator)
	if !ok {
		return nil
	}
	err := validator.ValidateAll()
	if err == nil {
		return nil
	}
	where := string(message.Descriptor().FullName())
	if path != "" {
		where = path + " (" + where + ")"
	}
	multi, ok := err.(multiError)
	if !ok {
		return []string{fmt.Sprintf("%s: %v", where, err)}
	}
	var violations []string
	for _, violation := range multi.AllErrors() {
		violations = append(violations, fmt.Sprintf("%s: %v", where, violation))
	}
	return violations
}

func walkMessage(message protoreflect.Message, path string, violations *[]string) error {
	var walkErr error
	message.Range(func(field protoreflect.FieldDescriptor, value protoreflect.Value) bool {
		fieldPath := joinPath(path, string(field.Name()))
		if isDeprecatedField(field) {
			*violations = append(*violations, fmt.Sprintf("%s: field %s is deprecated",
				fieldPath, field.FullName()))
		}
		walkErr = walkValue(field, value, fieldPath, violations)
		return walkErr == nil
	})
	return walkErr
}

func walkValue(
	field protoreflect.FieldDescriptor,
	value protoreflect.Value,
	path string,
	violations *[]string,
) error {
	switch {
	case field.IsList():
		list := value.List()
		for i := 0; i < list.Len(); i++ {
			if err := walkSingular(field, list.Get(i), fmt.Sprintf("%s[%d]", path, i),
				violations); err != nil {
				return err
			}
		}
	case field.IsMap():
		var err error
		value.Map().Range(func(key protoreflect.MapKey, item protoreflect.Value) bool {
			err = walkSingular(field.MapValue(), item,
				fmt.Sprintf("%s[%v]", path, key.Interface()), violations)
			return err == nil
		})
		return err
	default:
		return walkSingular(field, value, path, violations)
	}
	return nil
}

func walkSingular(
	field protoreflect.FieldDescriptor,
	value protoreflect.Value,
	path string,
	violations *[]string,
) error {
	if field.Kind() == protoreflect.EnumKind {
		enumValue := field.Enum().Values().ByNumber(value.Enum())
		if enumValue != nil && isDeprecatedEnumValue(enumValue) {
			*violations = append(*violations, fmt.Sprintf("%s: enum value %s is deprecated",
				path, enumValue.FullName()))
		}
		return nil
	}
	if field.Kind() != protoreflect.MessageKind && field.Kind() != protoreflect.GroupKind {
		return nil
	}

	message := value.Message()
	if duration, ok := message.Interface().(*durationpb.Duration); ok {
		// Envoy's DurationUtil (source/common/protobuf/utility.cc) rejects negative durations
		// when it converts them, also on fields without a PGV rule such as
		// GrpcService.timeout.
		if duration.GetSeconds() < 0 || duration.GetNanos() < 0 {
			*violations = append(*violations, fmt.Sprintf("%s: duration %s is negative",
				path, duration.AsDuration()))
		}
		return nil
	}
	anyMessage, ok := message.Interface().(*anypb.Any)
	if !ok {
		return walkMessage(message, path, violations)
	}
	content, err := anyMessage.UnmarshalNew()
	if err != nil {
		return fmt.Errorf("%s: cannot resolve Any of type %q: %w", path, anyMessage.GetTypeUrl(), err)
	}
	contentPath := fmt.Sprintf("%s<%s>", path, content.ProtoReflect().Descriptor().FullName())
	*violations = append(*violations, runValidateAll(content.ProtoReflect(), contentPath)...)
	return walkMessage(content.ProtoReflect(), contentPath, violations)
}

func isDeprecatedField(field protoreflect.FieldDescriptor) bool {
	options, ok := field.Options().(*descriptorpb.FieldOptions)
	return ok && options.GetDeprecated()
}

func isDeprecatedEnumValue(value protoreflect.EnumValueDescriptor) bool {
	options, ok := value.Options().(*descriptorpb.EnumValueOptions)
	return ok && options.GetDeprecated()
}

func joinPath(parent string, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}
