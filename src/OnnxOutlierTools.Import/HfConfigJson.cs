using System.Text;
using System.Text.Json;

namespace OnnxOutlierTools.Import;

/// <summary>Writes a Hugging Face <c>LlamaConfig</c>-style config.json for a decoder, as Optimum places one
/// next to its exports (and as the llama-torch-* fixtures carry): for people and tools that read it.</summary>
public static class HfConfigJson
{
    public static string Create(DecoderConfig c, bool useCache, string torchDtype = "float32")
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, Inspection.JsonOutput.WriterOptions))
        {
            w.WriteStartObject();
            w.WriteStartArray("architectures");
            w.WriteStringValue("LlamaForCausalLM");
            w.WriteEndArray();
            w.WriteBoolean("attention_bias", false);
            w.WriteNumber("bos_token_id", 1);
            w.WriteNumber("eos_token_id", 2);
            w.WriteNumber("head_dim", c.HeadSize);
            w.WriteString("hidden_act", "silu");
            w.WriteNumber("hidden_size", c.Dim);
            w.WriteNumber("intermediate_size", c.HiddenDim);
            w.WriteNumber("max_position_embeddings", c.MaxSeqLen);
            w.WriteString("model_type", "llama");
            w.WriteNumber("num_attention_heads", c.Heads);
            w.WriteNumber("num_hidden_layers", c.Layers);
            w.WriteNumber("num_key_value_heads", c.KvHeads);
            w.WriteNumber("rms_norm_eps", c.NormEps);
            w.WriteNumber("rope_theta", c.RopeTheta);
            w.WriteBoolean("tie_word_embeddings", c.SharedClassifier);
            w.WriteString("torch_dtype", torchDtype);
            w.WriteBoolean("use_cache", useCache);
            w.WriteNumber("vocab_size", c.VocabSize);
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray()) + "\n";
    }
}
