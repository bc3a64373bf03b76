using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace OnnxOutlierTools.Inspection;

/// <summary>The one set of serializer options every JSON output uses (inspect --json, --layers, convert and
/// import reports, config.json), so a field prints the same wherever it appears.
/// <list type="bullet">
/// <item>camelCase property names, camelCase enum names, indented; nulls written (every property is always
/// present); numbers strict; dimensions as a number, a name or null.</item>
/// <item>Escaping: names come out as the model spells them, which is what a user grepping or diffing the
/// output expects. The BCL's default encoder is made for JSON pasted into HTML: it escapes
/// <c>+ &lt; &gt; &amp; '</c> and all non-ASCII, so <c>past_sequence_length + 1</c> printed as
/// <c>past_sequence_length \u002B 1</c> (inspect --json --layers did, while inspect --json did not) and
/// <c>Größe</c> as <c>Gr\u00F6\u00DFe</c>: equal after decoding, but not to grep, diff or read. This output
/// goes to terminals, files and scripts, never unescaped into a page, so the relaxed encoder is the right
/// base (a future HTML report escapes for HTML itself). On top of it <see cref="TerminalSafeJsonEncoder"/>
/// escapes what the relaxed encoder lets through but a terminal would act on: bidi overrides, zero-width
/// and other format characters, line and paragraph separators; control characters (ESC, newline, BEL)
/// are escaped by both. So JSON shown on a terminal can neither move the cursor nor reorder text.</item>
/// </list></summary>
public static class JsonOutput
{
    public static JsonSerializerOptions Options { get; } = Create();

    /// <summary>The writer settings matching <see cref="Options"/>, for hand-written JSON (Utf8JsonWriter).</summary>
    public static JsonWriterOptions WriterOptions { get; } = new() { Indented = true, Encoder = Options.Encoder };

    public static string Serialize<T>(T value) => JsonSerializer.Serialize(value, Options);

    /// <summary>A JSON DOM (for documents assembled from several parts) written with the same options.</summary>
    public static string Serialize(JsonNode node) => node.ToJsonString(Options);

    private static JsonSerializerOptions Create()
    {
        var options = new JsonSerializerOptions(JsonSerializerDefaults.Web)
        {
            WriteIndented = true,
            DefaultIgnoreCondition = JsonIgnoreCondition.Never,
            NumberHandling = JsonNumberHandling.Strict,
            Encoder = TerminalSafeJsonEncoder.Instance,
        };
        options.Converters.Add(new DimJsonConverter());
        options.Converters.Add(new JsonStringEnumConverter(JsonNamingPolicy.CamelCase));
        options.MakeReadOnly(populateMissingResolver: true);
        return options;
    }
}
