using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace OnnxOutlierTools.Reporting.Json;

/// <summary>A double as a JSON number when finite, else as the string <c>"NaN"</c>, <c>"Infinity"</c> or
/// <c>"-Infinity"</c> (the spellings of .NET's named floating-point literals and of JavaScript's <c>String(x)</c>;
/// Python reads them with <c>float(s)</c>). Strings, not null: -infinity (a channel never seen) and +infinity (a ratio
/// over a zero median) must stay apart. Finite values are written in the shortest form that reads back to the same
/// double, so a file round-trips bit for bit.</summary>
public sealed class NonFiniteDoubleConverter : JsonConverter<double>
{
    public const string NaN = "NaN";
    public const string PositiveInfinity = "Infinity";
    public const string NegativeInfinity = "-Infinity";

    public override double Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType == JsonTokenType.Number) return reader.GetDouble();
        if (reader.TokenType == JsonTokenType.String)
        {
            string? text = reader.GetString();
            return text switch
            {
                NaN => double.NaN,
                PositiveInfinity => double.PositiveInfinity,
                NegativeInfinity => double.NegativeInfinity,
                _ => throw new JsonException($"'{text}' is not a number (only \"{NaN}\", \"{PositiveInfinity}\" and \"{NegativeInfinity}\" may be strings)"),
            };
        }
        throw new JsonException($"expected a number, found {reader.TokenType}");
    }

    public override void Write(Utf8JsonWriter writer, double value, JsonSerializerOptions options)
    {
        if (double.IsFinite(value)) writer.WriteNumberValue(value);
        else writer.WriteStringValue(Spell(value));
    }

    /// <summary>The JSON text of one double (for the compact arrays).</summary>
    public static string Format(double value) =>
        double.IsFinite(value) ? value.ToString("R", CultureInfo.InvariantCulture) : "\"" + Spell(value) + "\"";

    private static string Spell(double value) => double.IsNaN(value) ? NaN : value > 0 ? PositiveInfinity : NegativeInfinity;
}
