using System.Text.Json;
using OnnxOutlierTools.Inspection;

namespace OnnxOutlierTools.Reporting.Json;

/// <summary>The serializer options of stats.json and report.json: the project's <see cref="JsonOutput.Options"/>
/// (camelCase, enums as camelCase strings, every property written, terminal-safe escaping) plus two converters:
/// <list type="bullet">
/// <item>non-finite doubles as the strings <c>"NaN"</c>, <c>"Infinity"</c>, <c>"-Infinity"</c>
/// (<see cref="NonFiniteDoubleConverter"/>): an unseen channel's max is -infinity, a ratio over a zero median is
/// +infinity, and strict JSON has no literal for either;</item>
/// <item>number arrays on one line (<see cref="CompactArrayConverter"/>): a channel array of a 4096-wide model would
/// otherwise take 4096 lines.</item>
/// </list></summary>
public static class ReportingJson
{
    public static JsonSerializerOptions Options { get; } = Create();

    private static JsonSerializerOptions Create()
    {
        var options = new JsonSerializerOptions(JsonOutput.Options)
        {
            // A damaged file fails on the field at fault: null where the schema has a value, a missing positional field.
            RespectNullableAnnotations = true,
            RespectRequiredConstructorParameters = true,
        };
        options.Converters.Insert(0, new NonFiniteDoubleConverter());
        options.Converters.Insert(0, new CompactArrayConverter());
        options.MakeReadOnly(populateMissingResolver: true);
        return options;
    }
}
