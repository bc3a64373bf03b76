using OnnxOutlierTools.Runtime;

namespace OnnxOutlierTools.Tests.Runtime;

/// <summary>A fixture model and the inputs it runs with on ORT 1.32 CPU (MANIFEST.md, "Runtime check").</summary>
public sealed record FixtureRecipe(string Name, string File, InputSynthesisOptions Inputs, bool HasExternalData = false)
{
    public string ModelPath => Fixtures.Export(Name, File);
    public override string ToString() => Name;
}

/// <summary>Input recipes for the 12 exported fixtures, at the sizes MANIFEST.md lists as working.</summary>
public static class FixtureRecipes
{
    private static readonly Dictionary<string, FixtureRecipe> Recipes = new FixtureRecipe[]
    {
        // seq 8, token_type 0 for the first half and 1 for the second.
        new("bert-toy-torch", "bert_toy_optimized.onnx", Options(99, ("batch", 1), ("max_seq_len_in_batch", 8)) with
        {
            Generators = new Dictionary<string, InputGenerator> { ["token_type_ids"] = InputSynthesizer.FromIndex((pos, _) => pos < 4 ? 0 : 1) },
        }),
        new("distilbert-optimum", "model.onnx", Options(30522, ("batch", 1), ("sequence", 8))),
        // prompt 4, max_length 12, 2 beams, one returned sequence.
        new("gpt2-ort-beamsearch", "tiny_gpt2_beamsearch.onnx", Options(1000, ("batch_size", 1), ("sequence_length", 4)) with
        {
            Generators = new Dictionary<string, InputGenerator>
            {
                ["max_length"] = InputSynthesizer.Fill(12),
                ["min_length"] = InputSynthesizer.Fill(1),
                ["num_beams"] = InputSynthesizer.Fill(2),
                ["num_return_sequences"] = InputSynthesizer.Fill(1),
                ["length_penalty"] = InputSynthesizer.Fill(1),
                ["repetition_penalty"] = InputSynthesizer.Fill(1),
            },
        }),
        // seq 4 after a past of 3: int32 ids below 1000, positions 3..6.
        new("gpt2-ort-fused-fp16", "past.onnx", Options(1000, ("batch_size", 1), ("seq_len", 4), ("past_seq_len", 3), ("total_seq_len", 7)) with { PositionOffset = 3 }),
        new("gpt2-ort-fused-fp32", "past.onnx", Options(1000, ("batch_size", 1), ("seq_len", 4), ("past_seq_len", 3), ("total_seq_len", 7)) with { PositionOffset = 3 }),
        // weights shrunk by ORT test tooling: vocab 20, total length <= 8.
        new("gpt2-torch-nopast", "GPT2Model.onnx", Options(20, ("batch_size", 1), ("seq_len", 4))),
        // 'seq_len' is the PAST length here; one new token.
        new("gpt2-torch-past", "gpt2_past.onnx", Options(20, ("batch_size", 1), ("seq_len", 3))),
        new("llama-genai-gqa-fp32", "model.onnx",
            Options(32000, ("batch_size", 1), ("sequence_length", 4), ("past_sequence_length", 3), ("total_sequence_length", 7)), HasExternalData: true),
        // this builder flavour runs a prompt with an empty past (seq>1 with past>0 fails on ORT 1.32 CPU).
        new("llama-genai-mha-fp16", "model.onnx",
            Options(32000, ("batch_size", 1), ("sequence_length", 4), ("past_sequence_length", 0), ("total_sequence_length", 4)), HasExternalData: true),
        new("llama-mobius-opset24", "model.onnx", Options(256, ("batch", 1), ("sequence_len", 4)) with
        {
            Generators = new Dictionary<string, InputGenerator>
            {
                ["write_indices"] = InputSynthesizer.Fill(0),
                ["nonpad_kv_seqlen"] = InputSynthesizer.Fill(4),
            },
        }),
        new("llama-torch-nopast", "model.onnx", Options(512, ("batch_size", 1), ("sequence_length", 4))),
        // attention_mask is [batch_size, "past_sequence_length + sequence_length"]: the sum of the two bindings.
        new("llama-torch-past", "model.onnx", Options(512, ("batch_size", 1), ("sequence_length", 4), ("past_sequence_length", 3)) with { PositionOffset = 3 }),
    }.ToDictionary(r => r.Name);

    public static FixtureRecipe Get(string name) => Recipes[name];

    public static IEnumerable<FixtureRecipe> All => Recipes.Values;

    /// <summary>All fixture names, for [MemberData].</summary>
    public static TheoryData<string> Names
    {
        get
        {
            var data = new TheoryData<string>();
            foreach (string name in Recipes.Keys) data.Add(name);
            return data;
        }
    }

    private static InputSynthesisOptions Options(long vocab, params (string Name, long Size)[] dims) => new()
    {
        IdUpperBound = vocab,
        Dims = dims.ToDictionary(d => d.Name, d => d.Size),
    };
}
