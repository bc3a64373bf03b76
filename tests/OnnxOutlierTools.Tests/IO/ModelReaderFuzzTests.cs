using System.Diagnostics;
using OnnxOutlierTools.Inspection;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Tensors;
using Xunit.Abstractions;

namespace OnnxOutlierTools.Tests.IO;

/// <summary>Seeded mutations of real fixtures: each mutated model either loads (and can be summarized
/// and read) or fails with a <see cref="ModelLoadException"/>; nothing else, and nothing hangs.</summary>
public class ModelReaderFuzzTests(ITestOutputHelper output)
{
    private const int Seed = 20251129;

    // (fixture, mutations). The GQA and MHA models load with their external data files beside them.
    private static readonly (string Flavour, string File, int Count)[] Sources =
    [
        ("llama-genai-gqa-fp32", "model.onnx", 900),
        ("llama-genai-mha-fp16", "model.onnx", 600),
        ("gpt2-ort-fused-fp16", "past.onnx", 250),
        ("gpt2-ort-beamsearch", "tiny_gpt2_beamsearch.onnx", 150),
        ("bert-toy-torch", "bert_toy_optimized.onnx", 150),
    ];

    [Fact]
    public async Task Load_MutatedFixtures_LoadOrThrowModelLoadExceptionOnly()
    {
        var stats = await Task.Run(Fuzz).WaitAsync(TimeSpan.FromSeconds(60)); // a hang fails with TimeoutException
        output.WriteLine($"{stats.Total} mutations: {stats.Loaded} loaded, {stats.Rejected} rejected, {stats.Elapsed.TotalSeconds:F1} s");
        Assert.True(stats.Total >= 2000);
        Assert.True(stats.Rejected > stats.Total / 4, "the mutations should break most models");
        Assert.True(stats.Loaded > 0, "some mutations should leave a loadable model");
    }

    private sealed record Stats(int Total, int Loaded, int Rejected, TimeSpan Elapsed);

    private static Stats Fuzz()
    {
        var clock = Stopwatch.StartNew();
        var random = new Random(Seed);
        int total = 0, loaded = 0, rejected = 0;
        foreach (var (flavour, file, count) in Sources)
        {
            string path = Fixtures.Export(flavour, file);
            byte[] original = File.ReadAllBytes(path);
            var fields = ProtobufFields.LengthDelimited(original);
            for (int i = 0; i < count; i++)
            {
                var (mutated, description) = Mutate(original, fields, random);
                var options = new LoadOptions { RequireExternalData = i % 2 == 0 };
                total++;
                try
                {
                    using var model = ModelReader.LoadFromBytes(mutated, path, options);
                    Exercise(model);
                    loaded++;
                }
                catch (ModelLoadException ex)
                {
                    rejected++;
                    Assert.DoesNotContain('\n', ex.Problem);
                    Assert.StartsWith(path + ": ", ex.Message);
                }
                catch (Exception ex)
                {
                    Assert.Fail($"{flavour}/{file} mutation {i} ({description}), RequireExternalData={options.RequireExternalData}: {ex}");
                }
            }
        }
        return new Stats(total, loaded, rejected, clock.Elapsed);
    }

    /// <summary>What inspect and a pass would do with a loaded model: summarize it and read its tensors.</summary>
    private static void Exercise(OnnxOutlierTools.Ir.Model model)
    {
        ModelSummary.Create(model).ToJson();
        foreach (var graph in model.Graph.SelfAndSubgraphs())
            foreach (var v in graph.Initializers)
                if (v.ConstValue is { } t and not MissingExternalTensor && t.DataType != TensorDataType.String && t.ByteLength < (16 << 20))
                    _ = t.Bytes.Length;
    }

    private static (byte[] Bytes, string Description) Mutate(byte[] original, List<ProtobufFields.Field> fields, Random random)
    {
        byte[] b = (byte[])original.Clone();
        switch (random.Next(5))
        {
            case 0:
            {
                int flips = random.Next(1, 9);
                for (int k = 0; k < flips; k++) b[random.Next(b.Length)] ^= (byte)(1 << random.Next(8));
                return (b, $"{flips} bit flips");
            }
            case 1:
            {
                int at = random.Next(b.Length);
                b[at] = (byte)random.Next(256);
                return (b, $"byte {at} set");
            }
            case 2:
            {
                int length = random.Next(1, b.Length);
                return (b[..length], $"truncated to {length}");
            }
            case 3:
            {
                int at = random.Next(b.Length + 1);
                var inserted = new byte[random.Next(1, 17)];
                random.NextBytes(inserted);
                return ([.. b.AsSpan(0, at), .. inserted, .. b.AsSpan(at)], $"{inserted.Length} bytes inserted at {at}");
            }
            default:
            {
                var field = fields[random.Next(fields.Count)];
                ulong length = (ulong)field.Length;
                ulong corrupted = random.Next(8) switch
                {
                    0 => 0,
                    1 => length + (ulong)random.Next(1, 9),
                    2 => length - Math.Min(length, (ulong)random.Next(1, 9)),
                    3 => length * 2 + 1,
                    4 => int.MaxValue,
                    5 => uint.MaxValue,
                    6 => ulong.MaxValue,
                    _ => (ulong)random.NextInt64(),
                };
                byte[] varint = ProtobufFields.Varint(corrupted);
                return ([.. b.AsSpan(0, field.LengthAt), .. varint, .. b.AsSpan(field.LengthAt + field.LengthSize)],
                    $"length {length} at {field.LengthAt} -> {corrupted}");
            }
        }
    }
}

/// <summary>Finds length-delimited fields (messages, strings, bytes, packed arrays) in protobuf bytes.</summary>
internal static class ProtobufFields
{
    public readonly record struct Field(int LengthAt, int LengthSize, int Length);

    public static List<Field> LengthDelimited(byte[] bytes)
    {
        var fields = new List<Field>();
        if (!Walk(bytes, 0, bytes.Length, fields, 0)) throw new InvalidOperationException("not protobuf");
        return fields;
    }

    /// <summary>Parses [start, end) as a message; nested payloads that parse cleanly are walked too.</summary>
    private static bool Walk(byte[] b, int start, int end, List<Field> fields, int depth)
    {
        int pos = start;
        var found = new List<Field>();
        while (pos < end)
        {
            if (!TryVarint(b, ref pos, end, out ulong tag) || tag >> 3 == 0) return false;
            switch ((int)(tag & 7))
            {
                case 0: if (!TryVarint(b, ref pos, end, out _)) return false; break;
                case 1: pos += 8; break;
                case 5: pos += 4; break;
                case 2:
                    int lengthAt = pos;
                    if (!TryVarint(b, ref pos, end, out ulong length) || length > (ulong)(end - pos)) return false;
                    found.Add(new Field(lengthAt, pos - lengthAt, (int)length));
                    if (depth < 12 && length > 0)
                    {
                        var inner = new List<Field>();
                        if (Walk(b, pos, pos + (int)length, inner, depth + 1)) found.AddRange(inner);
                    }
                    pos += (int)length;
                    break;
                default: return false;
            }
            if (pos > end) return false;
        }
        fields.AddRange(found);
        return true;
    }

    private static bool TryVarint(byte[] b, ref int pos, int end, out ulong value)
    {
        value = 0;
        for (int shift = 0; shift < 64 && pos < end; shift += 7)
        {
            byte x = b[pos++];
            value |= (ulong)(x & 0x7F) << shift;
            if (x < 0x80) return true;
        }
        return false;
    }

    public static byte[] Varint(ulong value)
    {
        var result = new List<byte>(10);
        do
        {
            byte x = (byte)(value & 0x7F);
            value >>= 7;
            result.Add(value != 0 ? (byte)(x | 0x80) : x);
        } while (value != 0);
        return [.. result];
    }
}
