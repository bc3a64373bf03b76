using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace OnnxOutlierTools.Reporting.Json;

/// <summary>Writes double[], long[] and int[] on one line (<c>[1.5,"-Infinity",3]</c>) inside an indented document:
/// stats.json holds several channel-length arrays per probe point. Reading is the ordinary array reading (non-finite
/// strings through <see cref="NonFiniteDoubleConverter"/>).</summary>
public sealed class CompactArrayConverter : JsonConverterFactory
{
    public override bool CanConvert(Type typeToConvert) =>
        typeToConvert == typeof(double[]) || typeToConvert == typeof(long[]) || typeToConvert == typeof(int[]);

    public override JsonConverter CreateConverter(Type typeToConvert, JsonSerializerOptions options) =>
        typeToConvert == typeof(double[]) ? new Doubles()
        : typeToConvert == typeof(long[]) ? new Integers<long>()
        : new Integers<int>();

    private sealed class Doubles : JsonConverter<double[]>
    {
        private static readonly NonFiniteDoubleConverter Element = new();

        public override double[]? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
        {
            if (reader.TokenType == JsonTokenType.Null) return null;
            if (reader.TokenType != JsonTokenType.StartArray) throw new JsonException($"expected an array of numbers, found {reader.TokenType}");
            var values = new List<double>();
            while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
                values.Add(Element.Read(ref reader, typeof(double), options));
            return [.. values];
        }

        public override void Write(Utf8JsonWriter writer, double[] value, JsonSerializerOptions options) =>
            writer.WriteRawValue(Join(value, NonFiniteDoubleConverter.Format), skipInputValidation: true);
    }

    private sealed class Integers<T> : JsonConverter<T[]> where T : struct, IFormattable
    {
        public override T[]? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
        {
            if (reader.TokenType == JsonTokenType.Null) return null;
            if (reader.TokenType != JsonTokenType.StartArray) throw new JsonException($"expected an array of integers, found {reader.TokenType}");
            var values = new List<T>();
            while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
            {
                if (reader.TokenType != JsonTokenType.Number) throw new JsonException($"expected an integer, found {reader.TokenType}");
                values.Add(typeof(T) == typeof(long) ? (T)(object)reader.GetInt64() : (T)(object)reader.GetInt32());
            }
            return [.. values];
        }

        public override void Write(Utf8JsonWriter writer, T[] value, JsonSerializerOptions options) =>
            writer.WriteRawValue(Join(value, v => v.ToString(null, CultureInfo.InvariantCulture)), skipInputValidation: true);
    }

    private static string Join<T>(T[] values, Func<T, string> format)
    {
        var sb = new StringBuilder(values.Length * 8 + 2).Append('[');
        for (int i = 0; i < values.Length; i++)
        {
            if (i > 0) sb.Append(',');
            sb.Append(format(values[i]));
        }
        return sb.Append(']').ToString();
    }
}
